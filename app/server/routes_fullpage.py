"""GET /a/{assistant}: the full-page assistant (app.server.fullpage), or one 404 page for every
id that is unknown, malformed or without `fullpage`. Rate limited like the widget's config."""

from __future__ import annotations

import re

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from slowapi import Limiter

from app.server.assistant_schema import SLUG_PATTERN
from app.server.assistants import Assistants
from app.server.fullpage import HEADERS, not_found_html, page_html

_SLUG = re.compile(SLUG_PATTERN)


def fullpage_router(limiter: Limiter, rate: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/a/{assistant}", response_class=HTMLResponse)
    @limiter.limit(rate)
    async def fullpage(request: Request, assistant: str) -> HTMLResponse:
        store: Assistants = request.app.state.assistants
        page = None
        if _SLUG.match(assistant):  # anything else is no id of ours: not even looked up
            page = await anyio.to_thread.run_sync(store.page, assistant)
        if page is None:
            return HTMLResponse(not_found_html(), status_code=404, headers=HEADERS)
        return HTMLResponse(page_html(page.assistant, page.settings), headers=HEADERS)

    return router
