"""Chat for the widget and for developers: /api/chat (JSON or Server-Sent Events), sessions,
feedback. Every answer comes from the one chain; exchanges are stored as they complete."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from slowapi import Limiter

from app.chat.types import Token
from app.server import problems
from app.server.access import ChatCaller, spend_chat
from app.server.assistant_access import spend_assistant_caps
from app.server.chat_gate import (
    RETRY_AFTER_S,
    ChatGate,
    ChatsBusy,
    Ticket,
    run_sync,
    slot_with_keepalive,
    with_keepalive,
)
from app.server.db import SessionOwner, UnknownSession
from app.server.handoff_chat import handoff_turn, offer_handoff
from app.server.inputs import MessageId, SessionId, Text
from app.server.lead_gate import lead_refusal
from app.server.services import Completed, NotFound, Services
from app.server.session_access import caller_assistant, foreign_session, may_use

log = logging.getLogger(__name__)
T = TypeVar("T")


class ChatRequest(BaseModel):
    message: Text = Field(min_length=1, description="The user's message, in any language.")
    session_id: SessionId | None = Field(None, description="Continue this conversation.")
    collection: Text | None = Field(
        None, max_length=512, description="Knowledge base; default from settings."
    )
    stream: bool = Field(False, description="Server-Sent Events: token, sources, done.")


class FeedbackRequest(BaseModel):
    session_id: SessionId = Field(description="The session the answer belongs to.")
    message_id: MessageId
    rating: Literal["up", "down"]
    comment: Text = Field("", max_length=2000)


def result_body(done: Completed) -> dict[str, Any]:
    r = done.result
    return {
        "session_id": done.session_id,
        "message_id": done.message_id,
        "answer": r.answer,
        "sources": [s.as_dict() for s in r.sources],
        "cited": r.cited,
        "language": r.language,
        "mode": r.mode,
        "grounded": r.grounded,
        "error": r.error,
        "retrieval_ms": r.retrieval_ms,
    }


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


RECHECK_S = 1.0  # a streamed turn that waited longer for its slot looks its collection up again
KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: clients ignore it, proxies see traffic
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def busy_response(request: Request) -> Response:
    """503 at once when every chat slot and queue place is taken."""
    return problems.problem_response(
        503,
        f"too many chats in progress; try again in {RETRY_AFTER_S} s",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# The streamed answer, as the OpenAPI schema shows it (FastAPI cannot infer it).
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON (the answer, its sources and ids), or with `stream: true` Server-Sent "
        "Events: `token` ({text}) events, then `sources` ({sources, cited}), then `done` "
        "({session_id, message_id, language, mode, grounded, error, retrieval_ms, and "
        "`offer_handoff: true` when the assistant offers a person}); during a human handoff, "
        "`handoff` ({state, session_id}) first, the notice as `token`s, then `done`; `error` "
        "({message}) if the stream fails; `: keep-alive` comments while waiting.",
        "content": {
            "text/event-stream": {
                # Before OpenAPI 3.2 an event stream's schema describes one event.
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {
                            "type": "string",
                            "enum": ["token", "sources", "done", "handoff", "error"],
                        },
                        "data": {"type": "string", "description": "a JSON object"},
                    },
                    "required": ["event", "data"],
                },
                "example": 'event: token\ndata: {"text": "Vesuvius"}\n\n',
            }
        },
    }
}


def admit(request: Request) -> Ticket:
    gate: ChatGate = request.app.state.chat_gate
    return gate.admit()  # ChatsBusy when full


@dataclass(frozen=True)
class TokenRun:
    """Answer pieces that arrived together: written to the client at once, still one `token`
    event each (an event per write cost ~0.25 ms of CPU: 25 ms for a 100-token answer)."""

    texts: tuple[str, ...]


def join_tokens(a: Any, b: Any) -> TokenRun | None:
    """`with_keepalive`'s merge for the SSE stream: consecutive tokens make a run."""
    if isinstance(a, Token | TokenRun) and isinstance(b, Token):
        return TokenRun((*(a.texts if isinstance(a, TokenRun) else (a.text,)), b.text))
    return None


async def gated_events(
    ticket: Ticket,
    deadline: float,
    interval: float,
    start: Callable[[], Iterator[T]],
    merge: Callable[[Any, Any], Any] | None = None,
) -> AsyncIterator[Any]:
    """Wait for a chat slot, then the blocking `start()` iterator's events; None for every
    `interval` seconds of silence, for the caller to send a keep-alive. `merge`: see
    `with_keepalive` (None: item by item). Releases the ticket."""
    try:
        async for outcome in slot_with_keepalive(ticket, deadline, interval):
            if outcome is None:
                yield None
        async for event in with_keepalive(start(), interval, merge):
            yield event
    finally:
        ticket.release()


def chat_router(limiter: Limiter, rate: str) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["chat"])

    @router.post(
        "/chat",
        dependencies=[Depends(spend_chat)],
        responses={**SSE_RESPONSE, **problems.responses(400, 401, 403, 404, 413, 422, 429, 503)},
    )
    async def chat(request: Request, body: ChatRequest, caller: ChatCaller) -> Any:
        """Answer one message. `stream: true` gives `token` events, then `sources`, then
        `done` with the session id; `: keep-alive` comments while waiting. 503 with
        Retry-After when too many chats are in progress."""
        services: Services = request.app.state.services
        deadline = time.monotonic() + services.settings.llm.deadline
        limit = services.settings.server.max_message_chars
        if len(body.message) > limit:
            raise HTTPException(422, f"message is longer than {limit} characters")
        collection = caller.collection(body.collection, services.settings.collection)
        try:  # unknown: 404 before streaming; the turn then uses this chain
            chain = await run_sync(lambda: services.chain(collection))
            checked = time.monotonic()
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        if await foreign_session(services.conversations, caller, body.session_id):
            raise HTTPException(404, "no such session")
        refusal = await lead_refusal(request, caller, body.session_id)
        if refusal is not None:
            return refusal
        handoff = await handoff_turn(
            request, caller, body.message, body.session_id, collection, body.stream
        )
        if handoff is not None:  # a person has (or is asked for) this conversation
            return handoff
        options = None
        if caller.assistant is not None:  # its caps, then its persona and model
            await spend_assistant_caps(request, caller.assistant, body.session_id)
            options = caller.assistant.answer_options(services.settings)
        assistant = caller_assistant(caller)
        try:
            ticket = admit(request)
        except ChatsBusy:
            return busy_response(request)

        def events() -> Iterator[Token | Completed]:
            # the chain checked above, unless the turn waited for a slot since: then the
            # collection is looked up again (another replica may have replaced it meanwhile)
            fresh = time.monotonic() - checked < RECHECK_S
            return services.chat(
                body.message,
                session_id=body.session_id,
                collection=collection,
                deadline=deadline,
                options=options,
                assistant=assistant,
                chain=chain if fresh else None,
            )

        if not body.stream:
            try:
                await ticket.wait(deadline)  # no slot by the deadline: the chain won't call the LLM
                done = await run_sync(
                    lambda: services.ask(
                        body.message,
                        session_id=body.session_id,
                        collection=collection,
                        deadline=deadline,
                        options=options,
                        assistant=assistant,
                    )  # its own lookup: a knowledge base deleted while this waited is a 404
                )
            except NotFound as exc:  # the knowledge base or the session went away meanwhile
                raise HTTPException(404, str(exc)) from exc
            finally:
                ticket.release()
            body_out = result_body(done)
            if await offer_handoff(request, caller, done.session_id):
                body_out["offer_handoff"] = True
            return body_out

        async def offer(done: Completed) -> dict[str, Any]:
            return (
                {"offer_handoff": True}
                if await offer_handoff(request, caller, done.session_id)
                else {}
            )

        interval = services.settings.server.sse_keepalive
        return StreamingResponse(
            _sse_events(gated_events(ticket, deadline, interval, events, join_tokens), offer),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    @router.get("/sessions/{session_id}", responses=problems.responses(401, 403, 404, 422))
    def session(request: Request, session_id: SessionId, caller: ChatCaller) -> dict[str, Any]:
        """The conversation so far: messages, the sources shown, feedback given."""
        services: Services = request.app.state.services
        try:
            conversation = services.conversations.conversation(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, "no such session") from exc
        owner = SessionOwner(conversation["collection"], conversation["assistant"])
        if not may_use(caller, owner):  # another knowledge base's, or another assistant's
            raise HTTPException(404, "no such session")
        return conversation

    @router.post("/feedback", responses=problems.responses(400, 401, 403, 404, 413, 422, 429))
    @limiter.limit(rate)
    def feedback(request: Request, body: FeedbackRequest, caller: ChatCaller) -> dict[str, Any]:
        """Thumbs up or down, and an optional comment, on one answer of the given session."""
        services: Services = request.app.state.services
        owner = services.conversations.owner(body.session_id)
        if owner is None or not may_use(caller, owner):
            raise HTTPException(404, "no such session")
        try:
            feedback_id = services.conversations.add_feedback(
                body.session_id, body.message_id, body.rating, body.comment
            )
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"ok": True, "id": feedback_id}

    return router


async def _sse_events(
    events: AsyncIterator[Token | TokenRun | Completed | None],
    extra_done: Callable[[Completed], Awaitable[dict[str, Any]]] | None = None,
) -> AsyncIterator[str]:
    """`extra_done`: more fields for `done` (the handoff offer)."""
    try:
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Token):
                yield sse("token", {"text": event.text})
            elif isinstance(event, TokenRun):
                yield "".join(sse("token", {"text": text}) for text in event.texts)
            else:
                body = result_body(event)
                extra = await extra_done(event) if extra_done is not None else {}
                yield sse("sources", {"sources": body["sources"], "cited": body["cited"]})
                yield sse(
                    "done",
                    {
                        k: body[k]
                        for k in (
                            "session_id",
                            "message_id",
                            "language",
                            "mode",
                            "grounded",
                            "error",
                            "retrieval_ms",
                        )
                    }
                    | extra,
                )
    except Exception:  # never a stack trace in the stream; the log has it
        log.exception("chat stream failed")
        yield sse("error", {"message": "internal error"})
