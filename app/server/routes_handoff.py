"""Human handoff over HTTP. The widget's side (widget key or full page, as /api/chat): ask for a
person, leave an email, poll for the operator's messages. The operator's side (admin key): the
queue, reply, take over, hand back. Thin wrappers of app.server.handoff.Handoffs; errors are
problem details; another assistant's session is answered like an unknown one (404)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from slowapi import Limiter

from app.server import problems
from app.server.access import (
    KEY_HEADER,
    PAGE_HEADER,
    AdminCaller,
    Caller,
    ChatCaller,
    RateBudget,
    Throttles,
    client_address,
    too_many,
)
from app.server.assistants import AssistantKey
from app.server.chat_gate import run_sync
from app.server.handoff import MAX_QUEUE, Handoffs, NoHandoff, QueueItem
from app.server.inputs import SQL_INT_MAX, SessionId, Text
from app.server.routes_admin import ADMIN_BEARER
from app.server.session_access import may_use

HANDOFF_DISABLED = "handoff_disabled"
MAX_EMAIL = 254


class HandoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: SessionId


class HandoffEmail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: SessionId
    email: Annotated[EmailStr, Field(max_length=MAX_EMAIL)]


class HandoffAnswer(BaseModel):
    state: Literal["waiting", "active", "offline"] = Field(
        description="offline: outside the assistant's hours (the handoff still waits for a person)."
    )
    message: str = Field(description="Plain text to show the visitor, in their language.")


class UpdateMessage(BaseModel):
    id: int
    role: Literal["operator", "assistant"]
    content: str
    created: str


class HandoffState(BaseModel):
    state: Literal["waiting", "active", "closed"]


class Updates(BaseModel):
    messages: list[UpdateMessage] = Field(
        description="After `after`, oldest first; not the visitor's."
    )
    handoff: HandoffState | None = Field(description="The latest handoff; null: never handed off.")


class Ok(BaseModel):
    ok: bool = True


class QueueEntry(BaseModel):
    id: int
    session_id: str
    assistant: str | None
    state: str
    reason: str = Field(description="button, phrase, offer (the visitor) or operator.")
    language: str
    first_question: str
    waiting_since: datetime
    accepted: datetime | None
    closed: datetime | None
    contact_email: str | None

    @classmethod
    def of(cls, item: QueueItem) -> QueueEntry:
        return cls(
            waiting_since=item.created, **{k: v for k, v in vars(item).items() if k != "created"}
        )


class OperatorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text = Field(min_length=1, description="Shown to the visitor as the operator's message.")


class Replied(BaseModel):
    message_id: int
    state: Literal["active"] = "active"


def _handoffs(request: Request) -> Handoffs:
    handoffs: Handoffs = request.app.state.handoffs
    return handoffs


async def _own_session(request: Request, caller: Caller, session_id: str) -> None:
    """404 unless the session exists and this widget caller may use it."""
    conversations = request.app.state.services.conversations
    owner = await run_sync(lambda: conversations.owner(session_id))
    if owner is None or not may_use(caller, owner):
        raise HTTPException(404, "no such session")


def _enabled(request: Request, caller: Caller) -> AssistantKey | Response:
    key = caller.assistant
    if key is None or not key.settings.handoff.enabled:
        return problems.problem_response(
            403,
            "this assistant does not hand conversations to a person",
            instance=request.url.path,
            code=HANDOFF_DISABLED,
        )
    return key


def handoff_router(
    limiter: Limiter, rate: str, throttles: Throttles, updates_rate: str
) -> APIRouter:
    router = APIRouter(tags=["handoff"])
    polls = RateBudget(updates_rate, "updates", throttles.store)
    widget_errors = problems.responses(400, 401, 403, 404, 413, 422, 429)
    admin: dict[str, Any] = {
        "dependencies": [Depends(ADMIN_BEARER)],
        "responses": problems.responses(400, 401, 403, 404, 413, 422, 429),
    }

    async def spend_poll(request: Request) -> None:
        """Polls have a budget of their own per client IP and per widget key (or full page)."""
        client, key = client_address(request), request.headers.get(KEY_HEADER)
        if not key and (page := request.headers.get(PAGE_HEADER)):
            key = "page:" + page[:64]

        def spend() -> int | None:
            wait = polls.hit(f"ip:{client}")
            if wait is None and key:
                wait = polls.hit(f"key:{hashlib.sha256(key.encode()).hexdigest()[:32]}")
            return wait

        wait = await throttles.run(spend)
        if wait is not None:
            raise too_many(wait)

    @router.post(
        "/api/handoff",
        summary="Ask for a person",
        response_model=HandoffAnswer,
        responses=widget_errors,
    )
    @limiter.limit(rate)
    async def request_handoff(request: Request, body: HandoffRequest, caller: ChatCaller) -> Any:
        """Ask for a person in this conversation (the visitor's button). Returns the open
        handoff if there is one. `offline` outside the assistant's hours: the handoff waits
        for a person all the same, and the visitor may leave an email. 403 `handoff_disabled`
        for an assistant without handoff."""
        key = _enabled(request, caller)
        if isinstance(key, Response):
            return key
        await _own_session(request, caller, body.session_id)
        handoffs = _handoffs(request)
        started = await run_sync(
            lambda: handoffs.request(body.session_id, key.assistant, key.settings, "button")
        )
        return HandoffAnswer(state=started.state, message=started.message)

    @router.post(
        "/api/handoff/email", summary="Leave an email for the team", responses=widget_errors
    )
    @limiter.limit(rate)
    async def handoff_email(request: Request, body: HandoffEmail, caller: ChatCaller) -> Ok:
        """The visitor's email for a reply after hours, on the conversation's open handoff."""
        await _own_session(request, caller, body.session_id)
        handoffs = _handoffs(request)
        try:
            await run_sync(lambda: handoffs.set_email(body.session_id, str(body.email)))
        except NoHandoff as exc:
            raise HTTPException(404, str(exc)) from exc
        return Ok()

    @router.get(
        "/api/sessions/{session_id}/updates",
        summary="Poll for the team's messages",
        response_model=Updates,
        dependencies=[Depends(spend_poll)],
        responses=widget_errors,
    )
    async def updates(
        request: Request,
        session_id: SessionId,
        caller: ChatCaller,
        after: Annotated[
            int, Query(ge=0, le=SQL_INT_MAX, description="The last message id seen.")
        ] = 0,
    ) -> JSONResponse:
        """Messages after `after` that are not the visitor's own (the operator's, the
        assistant's), and the handoff's state. The widget polls it every 3 s while a handoff
        is waiting or active; it has its own rate budget and never asks the LLM."""
        await _own_session(request, caller, session_id)
        handoffs = _handoffs(request)
        found = await run_sync(lambda: handoffs.updates(session_id, after))
        body = Updates.model_validate(found).model_dump(mode="json")
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/api/handoffs", summary="The handoff queue", **admin)
    async def queue(
        request: Request,
        _: AdminCaller,
        state: Literal["waiting", "active", "closed"] = "waiting",
        limit: Annotated[int, Query(ge=1, le=MAX_QUEUE)] = 100,
    ) -> list[QueueEntry]:
        """The operator's queue (admin): handoffs in `state`, newest first, with the assistant,
        the visitor's language and first question, since when, and the contact email."""
        handoffs = _handoffs(request)
        items = await run_sync(lambda: handoffs.queue(state, limit))
        return [QueueEntry.of(i) for i in items]

    async def _known(request: Request, session_id: str) -> None:
        conversations = request.app.state.services.conversations
        if await run_sync(lambda: conversations.owner(session_id)) is None:
            raise HTTPException(404, "no such session")

    @router.post("/api/conversations/{session_id}/reply", summary="Reply as the operator", **admin)
    async def reply(
        request: Request, session_id: SessionId, body: OperatorReply, _: AdminCaller
    ) -> Replied:
        """The operator's message to the visitor (admin), stored with role `operator`; the
        handoff becomes active (one is started if nobody asked) and the assistant stays quiet."""
        limit = request.app.state.services.settings.server.max_message_chars
        if len(body.text) > limit:
            raise HTTPException(422, f"text is longer than {limit} characters")
        await _known(request, session_id)
        handoffs = _handoffs(request)
        return Replied(message_id=await run_sync(lambda: handoffs.reply(session_id, body.text)))

    @router.post(
        "/api/conversations/{session_id}/handoff", summary="Take a conversation over", **admin
    )
    async def take_over(request: Request, session_id: SessionId, _: AdminCaller) -> HandoffState:
        """An operator takes the conversation over (admin), asked for or not: active."""
        await _known(request, session_id)
        handoffs = _handoffs(request)
        return HandoffState(state=await run_sync(lambda: handoffs.take_over(session_id)))

    @router.post(
        "/api/conversations/{session_id}/handback", summary="Hand back to the assistant", **admin
    )
    async def hand_back(request: Request, session_id: SessionId, _: AdminCaller) -> HandoffState:
        """Close the open handoff (admin): the assistant answers again. 404 when none is open."""
        handoffs = _handoffs(request)
        try:
            await run_sync(lambda: handoffs.hand_back(session_id))
        except NoHandoff as exc:
            raise HTTPException(404, str(exc)) from exc
        return HandoffState(state="closed")

    return router
