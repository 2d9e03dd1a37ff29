"""One ASGI middleware for what every HTTP request leaves behind: a line in the access log and
a count and duration in the metrics, labelled by route template (`/api/sessions/{session_id}`),
never by raw path, so random URLs cannot grow the number of series.

Hand-written rather than prometheus-fastapi-instrumentator: that one labels with the raw HTTP
method (any token a client sends becomes a series) and cannot write the access log."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logging_setup import printable

if TYPE_CHECKING:
    from app.observability.metrics import Metrics

access_log = logging.getLogger("kbchat.access")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: 404s, and refusals by middleware before routing


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request (routers set scope["route"]);
    the mounted Web UI's routes have templates too."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpObserver:
    """Times each request to the end of its response body (a stream's last chunk)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access: bool = True) -> None:
        self.app, self.metrics, self.access = app, metrics, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = route_label(scope)
        self.metrics.http_requests.labels(method, route, str(status)).inc()
        self.metrics.http_seconds.labels(method, route).observe(seconds)
        if status == 429:
            self.metrics.rate_limited.labels(route).inc()
        if not self.access:
            return
        client = scope.get("client")
        fields = {
            "method": printable(scope["method"], 16),
            "path": printable(scope["path"], 512),  # never the query string: it may hold keys
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
        }
        access_log.info(
            "%s %s %d %.1f ms client=%s",
            fields["method"],
            fields["path"],
            status,
            fields["duration_ms"],
            fields["client"],
            extra=fields,
        )
