# The devspace server image: the API (gunicorn), the reconciler and migrations, all one
# package (`devspace-server`). No Docker engine runs on the development machines, so it is not
# built there; tests/helm/test_dockerfiles.py lints it with hadolint. Build from the repository
# root: docker build -t ghcr.io/devspace/server:0.1.0 .
#
# Pinned base: a Python patch release on Debian 12 (a CI that publishes should also pin the
# digest it resolved, FROM python:…@sha256:…).
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
    DEVSPACE_DATA_DIR=/var/lib/devspace
USER 10001:10001
WORKDIR /var/lib/devspace
EXPOSE 8080
# Migrations do not run here, in every worker: `devspace-server migrate` runs once per rollout
# (the Helm chart's init container on SQLite, its hook Job on PostgreSQL). Sync workers: the
# app is short requests to a database; 2 per pod, more pods for more load. Workers are
# recycled now and then, heartbeat in memory (/dev/shm), no control socket.
# `devspace-server serve` (the embedded default) and `reconcile` are other commands.
CMD ["gunicorn", "--bind=0.0.0.0:8080", "--workers=2", "--worker-class=sync", \
     "--timeout=30", "--graceful-timeout=20", "--keep-alive=5", \
     "--max-requests=2000", "--max-requests-jitter=200", "--worker-tmp-dir=/dev/shm", \
     "--no-control-socket", "--access-logfile=-", "devspace_server.wsgi:app"]
