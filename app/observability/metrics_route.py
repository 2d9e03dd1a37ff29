"""GET /metrics for Prometheus. By default only with the admin key (Prometheus sends it as a
Bearer token, `authorization` in its scrape config): the counters tell anyone how busy the
service is, which LLM faults it has and which routes exist, and kbchat is often reachable from
the internet. `KBCHAT_METRICS=public` drops the key where a proxy keeps /metrics internal;
`off` removes the route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.server.access import admin_caller

if TYPE_CHECKING:
    from app.observability.metrics import Metrics


def metrics_router(mode: str) -> APIRouter:
    """The route for `mode` "admin" or "public" (the caller leaves it out for "off")."""
    router = APIRouter()
    guard = [Depends(admin_caller)] if mode == "admin" else []

    @router.get("/metrics", dependencies=guard, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus' text format. Async: it never waits, so it needs no worker thread."""
        registry: Metrics = request.app.state.metrics
        return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
