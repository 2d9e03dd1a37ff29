"""Logging for `kbchat serve`: one handler on the root logger (stderr), readable text or one JSON
object per line (python-json-logger), every record with the request id of the request it was
written for. uvicorn's own loggers propagate to it (uvicorn is started with `log_config=None`),
so its start-up lines and errors come out in the same format."""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from typing import IO, Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s"
# uvicorn adds a copy of some messages with terminal colour codes: noise in a JSON line
_NOT_FIELDS = ["color_message"]
# Control characters, line and paragraph separators and bidi overrides: what could fake a second
# record, or hide text, in a text log line when it comes from a client (a path, a header).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Format = Literal["text", "json"]
# Client libraries that log every request at INFO: httpx (the openai client, Chroma's HTTP client
# with its heartbeat every few seconds) would flood the log; they speak from WARNING up, unless
# the level asked for is DEBUG.
_CHATTY = ("httpx", "httpcore")


def printable(text: str, limit: int = 512) -> str:
    """Client-supplied text fit for a log line: unprintables escaped, at most `limit` chars."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return _UNPRINTABLE.sub(_escape, cut)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def configure_logging(
    level: str = "info", fmt: Format = "text", stream: IO[str] | None = None
) -> None:
    """Replace the logging set-up of this process (call once, before the server starts);
    `stream` is for tests (default: stderr)."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601 in UTC, first in the line
            "reserved_attrs": [*RESERVED_ATTRS, *_NOT_FIELDS],
        }
        if fmt == "json"
        else {"format": TEXT_FORMAT}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {
                "request_id": {
                    "()": "app.observability.request_id.RequestIdFilter",
                    "default": None if fmt == "json" else "-",
                }
            },
            "formatters": {"kbchat": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "stream": stream or sys.stderr,
                    "formatter": "kbchat",
                    "filters": ["request_id"],
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            "loggers": {  # uvicorn's loggers: ours to format (it is told not to configure them)
                name: {"level": level.upper(), "handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            }
            | {
                name: {"level": "DEBUG" if level.upper() == "DEBUG" else "WARNING"}
                for name in _CHATTY
            },
        }
    )
