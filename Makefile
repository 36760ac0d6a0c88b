# The project's entry points; see README.md.
.PHONY: run test dev lint pytest testbed

VENV := .venv/bin

run: dev
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
