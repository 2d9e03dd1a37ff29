"""A request id per HTTP request (asgi-correlation-id): a sane incoming X-Request-ID is kept (a
load balancer's or a client's), anything else is replaced by a fresh one; the id is echoed in the
response and sits in a context variable, so every log record written while serving the request,
worker threads included (anyio copies the context), carries it."""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator
from typing import TypeVar
from uuid import uuid4

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.applications import Starlette

HEADER = "X-Request-ID"
# Ids from nginx ($request_id), AWS, uuids and OpenTelemetry trace ids fit; huge values, spaces,
# newlines and control characters (log injection) do not.
T = TypeVar("T")
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

__all__ = [
    "HEADER",
    "RequestIdFilter",
    "add_request_ids",
    "correlation_id",
    "is_sane",
    "with_request_id",
]


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
    """Adds `request_id` to every record; `default` outside a request (JSON: null, text: -)."""

    def __init__(self, default: str | None = None) -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get() or self.default
        return True


def with_request_id(events: Iterator[T], request_id: str | None) -> Iterator[T]:
    """The items of `events`, each produced with `request_id` (a fresh one unless sane) set.

    For the Web UI: Gradio runs a handler's steps in worker threads of its queue, outside the
    context of the HTTP request that queued it, each step in a new copy of the queue's context;
    so the steps run in one context of their own that holds the id."""
    context = contextvars.copy_context()
    context.run(correlation_id.set, request_id if request_id and is_sane(request_id) else _new_id())
    while True:
        try:
            item = context.run(next, events)
        except StopIteration:
            return
        yield item
