"""The server's logs: one JSON object a line (or plain text for a person), with request ids.

`configure(level, fmt)` sets up the process's root logger; `gunicorn_logconfig()` gives
gunicorn the same format, so a log collector reads one format from every process. Inside a
request each line carries the request's id (`telemetry.py` sets it), so every line of one
request can be found from the id the client or the proxy saw.

Secrets are kept out of logs where they are handled (no message includes a password, a
token, a code or a key). As a second line of defence every line is scrubbed of anything
shaped like one of our tokens or a Bearer credential before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

ACCESS_LOGGER = "devspace_server.access"
FIELDS = "fields"
"""The `extra` key under which a record carries structured fields: `extra={FIELDS: {...}}`."""

# Our tokens (`dsa_`, `dsr_`, `dsp_` + 43 characters) and anything sent as a credential.
_SECRETS = re.compile(
    r"\b(ds[arp]_)[A-Za-z0-9_-]{16,}"
    r"|(?i:\b(bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?i:\b((?:client_secret|password|code|refresh_token|access_token|device_code)=))"
    r"[^&\s\"']+"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with token-shaped strings, credentials and secret-named parameters blanked."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + REDACTED, text)


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    if not has_request_context():
        return None
    found: str | None = g.get("request_id")
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, and the record's
    structured fields; a traceback goes in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update(
                {
                    k: redact(v) if isinstance(v, str) else v
                    for k, v in fields.items()
                    if k not in entry
                }
            )
        if record.exc_info:
            entry["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value …`, for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = dict(getattr(record, FIELDS, None) or {})
        request_id = current_request_id()
        if request_id and "request_id" not in extra:
            extra["request_id"] = request_id
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return redact(line)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for `fmt`, `json` or `text`."""
    return TextFormatter() if fmt == "text" else JsonFormatter()


def configure(level: str, fmt: str = "json") -> None:
    """Send every log record at `level` or above to stderr, formatted as `fmt`.

    Replaces handlers set up before (a second call reconfigures rather than duplicates).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def gunicorn_logconfig(level: str, fmt: str = "json") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own loggers and ours in `fmt` on stderr.

    gunicorn's access log stays off: it would print raw paths with their query strings
    (where OAuth codes travel); `telemetry.py` writes one line per request instead.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"devspace": {"()": f"{__name__}.{type(formatter(fmt)).__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "devspace",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
