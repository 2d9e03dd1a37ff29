"""A request id per HTTP request (asgi-correlation-id): a sane incoming X-Request-ID is kept (a
load balancer's or a client's), anything else is replaced by a fresh one; the id is echoed in the
response and sits in a context variable, so every log record written while serving the request,
worker threads included (anyio copies the context), carries it."""

from __future__ import annotations

import logging
import re
from uuid import uuid4

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.applications import Starlette

HEADER = "X-Request-ID"
# Ids from nginx ($request_id), AWS, uuids and OpenTelemetry trace ids fit; huge values, spaces,
# newlines and control characters (log injection) do not.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

__all__ = ["HEADER", "RequestIdFilter", "add_request_ids", "correlation_id", "is_sane"]


def is_sane(value: str) -> bool:
    return _SANE.fullmatch(value) is not None


def add_request_ids(app: Starlette) -> None:
    """Install the middleware; call it last, so it is the outermost layer and every other
    middleware (the access log, refusals before routing) already sees the id."""
    app.add_middleware(
        CorrelationIdMiddleware, header_name=HEADER, generator=_new_id, validator=is_sane
    )


def _new_id() -> str:
    return uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (None outside a request), for both log formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get()
        return True
