# The devspace server image: the API (gunicorn), the reconciler and migrations, all one
# package (`devspace-server`). Build from the repository root:
#   docker build -t ghcr.io/devspace/server:0.1.0 .
#
# No Docker engine runs on the development machines. What is proven there: hadolint lints
# this file (tests/helm/test_dockerfiles.py); tests/testbed/build-images interprets it into a
# root filesystem (each RUN in a chroot, the pip install for real from PyPI) and
# tests/images/ runs that as the Helm chart does: uid 10001, read-only root with only the data
# directory and /dev/shm writable, `devspace-server migrate`, then this CMD answering
# /healthz and /readyz. Not proven there: `docker build` itself, the python image (Debian
# 12's own Python 3.11.2 stands in for its 3.11.14 under /usr/local), a registry push.
#
# Pinned base: a Python patch release on Debian 12. Its digest is not pinned: Docker Hub is
# not reachable from the development machines, so a CI that publishes should pin the digest
# it resolved (FROM python:…@sha256:…).
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv at the path it keeps in the final stage, so it can be copied whole.
RUN python -m venv /opt/devspace
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY server ./server
# Compiled here: at run time the root filesystem is read-only and __pycache__ cannot be written.
RUN /opt/devspace/bin/pip install --no-compile '.[server]' \
 && /opt/devspace/bin/python -m compileall -q /opt/devspace/lib

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 devspace \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/devspace --no-create-home \
      --shell /usr/sbin/nologin devspace \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/devspace
COPY --from=build /opt/devspace /opt/devspace
ENV PATH=/opt/devspace/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEVSPACE_DATA_DIR=/var/lib/devspace \
    PROMETHEUS_MULTIPROC_DIR=/dev/shm/prometheus
USER 10001:10001
WORKDIR /var/lib/devspace
EXPOSE 8080
# Migrations do not run here, in every worker: `devspace-server migrate` runs once per rollout
# (the Helm chart's init container on SQLite, its hook Job on PostgreSQL). Sync workers: the
# app is short requests to a database; 2 per pod, more pods for more load. Workers are
# recycled now and then, heartbeat in memory (/dev/shm), no control socket. The config
# module gives gunicorn's own lines the server's JSON format and no access log: the app logs
# each request once, and an access log would print query strings (OAuth codes among them).
# `devspace-server serve` (the embedded default) and `reconcile` are other commands.
CMD ["gunicorn", "--config=python:devspace_server.gunicorn_conf", "--bind=0.0.0.0:8080", \
     "--workers=2", "--worker-class=sync", "--timeout=30", "--graceful-timeout=20", \
     "--keep-alive=5", "--max-requests=2000", "--max-requests-jitter=200", \
     "--worker-tmp-dir=/dev/shm", "--no-control-socket", "devspace_server.wsgi:app"]
