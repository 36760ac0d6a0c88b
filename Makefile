# The project's entry points; see README.md.
.PHONY: run serve test dev lint pytest testbed

VENV := .venv/bin

# The demo: control plane, test node, server, reconciler and gateway; then `devspace up` on
# examples/webapp (as root).
run: dev
	$(VENV)/python examples/demo.py

# The server alone on embedded defaults (SQLite in the data directory).
serve: dev
	$(VENV)/devspace-server serve

test: dev lint pytest

dev:
	.ci/bootstrap

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

pytest:
	$(VENV)/pytest

testbed: dev
	PYTHONPATH=tests $(VENV)/python -m testbed
