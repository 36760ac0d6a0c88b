"""gunicorn settings for the container: `gunicorn -c python:devspace_server.gunicorn_conf
devspace_server.wsgi:app`.

Logs in the server's format (JSON unless `DEVSPACE_LOG_FORMAT=text`), no gunicorn access
log (it would print query strings; the app logs one line per request), and metrics added
up across workers when `PROMETHEUS_MULTIPROC_DIR` is set: the directory is emptied when
gunicorn starts, and a worker's live gauges are dropped when it exits. Everything else
(bind, workers, timeouts) is left to gunicorn's own flags and `GUNICORN_CMD_ARGS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from devspace_server import logs, metrics
from devspace_server.config import LOG_LEVELS, setting

_level = (setting(os.environ, "log_level") or "INFO").strip().upper()
_format = (setting(os.environ, "log_format") or "json").strip().lower()

accesslog = None
logconfig_dict = logs.gunicorn_logconfig(_level if _level in LOG_LEVELS else "INFO", _format)
# The app factory runs in each worker, after the fork (no shared database connections).
preload_app = False


def on_starting(_arbiter: Any) -> None:
    """Empty the multiprocess metrics directory: its files are from processes now gone."""
    directory = metrics.multiprocess_dir()
    if directory:
        metrics.prepare_multiprocess_dir(Path(directory))


def child_exit(_arbiter: Any, worker: Any) -> None:
    """Drop an exited worker's live gauges from the multiprocess files."""
    metrics.mark_process_dead(worker.pid)
