"""GET /a/{assistant}: the full-page assistant (app.server.fullpage), or one 404 page for every
id that is unknown, malformed or without `fullpage`. Rate limited like the widget's config.

With `?preview=TOKEN` (minted by the unlocked console, app.server.preview_token) it is the
console's preview of the assistant as saved, full page on or off; with a wrong, expired or
another assistant's token it is the page as without one (the 404 when its full page is off)."""

from __future__ import annotations

import re

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from slowapi import Limiter

from app.server.assistant_schema import SLUG_PATTERN, AssistantSettings
from app.server.assistants import AssistantNotFound, Assistants
from app.server.fullpage import HEADERS, PREVIEW_HEADERS, not_found_html, page_html
from app.server.preview_token import verify

_SLUG = re.compile(SLUG_PATTERN)


def fullpage_router(limiter: Limiter, rate: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/a/{assistant}", response_class=HTMLResponse)
    @limiter.limit(rate)
    async def fullpage(
        request: Request,
        assistant: str,
        preview: str | None = None,
    ) -> HTMLResponse:
        store: Assistants = request.app.state.assistants
        page = None
        if preview and _SLUG.match(assistant) and verify(_admin_key(store), assistant, preview):
            found = await anyio.to_thread.run_sync(_settings_of, store, assistant)
            if found is not None:
                body = page_html(assistant, found, preview=True)
                return HTMLResponse(body, headers=PREVIEW_HEADERS)
        if _SLUG.match(assistant):  # anything else is no id of ours: not even looked up
            page = await anyio.to_thread.run_sync(store.page, assistant)
        if page is None:
            return HTMLResponse(not_found_html(), status_code=404, headers=HEADERS)
        return HTMLResponse(page_html(page.assistant, page.settings), headers=HEADERS)

    return router


def _admin_key(store: Assistants) -> str | None:
    key = store.settings.admin_api_key
    return key.get_secret_value() if key is not None else None


def _settings_of(store: Assistants, assistant: str) -> AssistantSettings | None:
    try:
        out = store.get(assistant)
        fields = out.model_dump(include=set(AssistantSettings.model_fields))
        return AssistantSettings.model_validate(fields)
    except (AssistantNotFound, ValidationError):  # gone, or stored by a stricter version
        return None
