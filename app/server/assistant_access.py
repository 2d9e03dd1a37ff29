"""What an assistant's widget key is allowed beyond any widget key: its caps (messages per
conversation, per day), and CORS answers for the origins its keys name, which change while the
server runs (KBCHAT_WIDGET_KEYS' origins are fixed at start)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import HTTPException, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.server.access import RateBudget, Throttles

if TYPE_CHECKING:
    from app.server.assistants import AssistantKey, Assistants

# A conversation's messages are counted over this window: longer than any conversation lasts
SESSION_WINDOW = "year"


def cap_refusal(what: str, wait: int) -> HTTPException:
    return HTTPException(429, f"{what}; try again in {wait} s", headers={"Retry-After": str(wait)})


def spend_caps(
    throttles: Throttles, key: AssistantKey, session_id: str | None, user_turns: int = 1
) -> None:
    """One message against the key's caps, in the rate limits' BudgetStore (memory or Redis);
    429 when a cap is reached. A conversation's first message carries no session id: it is
    message one, so a continued one spends from a budget of `session_messages - 1`.
    `user_turns`: the user messages of a conversation a /v1 client sends whole (no session)."""
    caps = key.settings.caps
    day = per_session = None
    if caps.session_messages is not None and user_turns > caps.session_messages:
        limit = f"conversation limit of {caps.session_messages} messages reached"
        raise cap_refusal(limit + "; start a new conversation", 60)
    if caps.daily_messages is not None:
        day = RateBudget(f"{caps.daily_messages}/day", "cap-day", throttles.store)
        wait = day.exhausted(key.key_id)
        if wait is not None:
            raise cap_refusal("this assistant's daily message limit is reached", wait)
    if caps.session_messages is not None and session_id:
        limit = f"conversation limit of {caps.session_messages} messages reached"
        if caps.session_messages == 1:
            raise cap_refusal(limit + "; start a new conversation", 60)
        rate = f"{caps.session_messages - 1}/{SESSION_WINDOW}"
        per_session = RateBudget(rate, "cap-session", throttles.store)
        wait = per_session.hit(f"{key.key_id}:{session_id}")
        if wait is not None:
            raise cap_refusal(limit + "; start a new conversation", wait)
    if day is not None:
        wait = day.hit(key.key_id)
        if wait is not None:  # another request took the last one meanwhile
            raise cap_refusal("this assistant's daily message limit is reached", wait)


async def spend_assistant_caps(
    request: Request, key: AssistantKey, session_id: str | None, user_turns: int = 1
) -> None:
    throttles: Throttles = request.app.state.throttles
    await throttles.run(lambda: spend_caps(throttles, key, session_id, user_turns))


class AssistantCORS(CORSMiddleware):
    """CORS for KBCHAT_WIDGET_KEYS' origins and for every assistant key's origins. The latter
    are read from the database in a worker thread at most every few seconds (a cached set)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        assistants: Assistants,
        allow_origins: Sequence[str],
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        expose_headers: Sequence[str],
        max_age: int,
    ) -> None:
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )
        self.assistants = assistants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.assistants.origins_stale():
            has_origin = any(name == b"origin" for name, _ in scope.get("headers", []))
            if has_origin:  # only cross-site calls need the set
                await anyio.to_thread.run_sync(self.assistants.refresh_origins)
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        return super().is_allowed_origin(origin) or origin.lower() in self.assistants.origins()
