"""The chat's side of the human handoff (app.server.handoff): while a handoff of the session is
waiting or active, /api/chat stores the visitor's message and asks no LLM; a short turn asking
for a person starts one (assistants with handoff enabled); and an answer after too many that
found nothing carries `offer_handoff: true`.

The answers keep /api/chat's shapes: the JSON body's fields, and in a stream a `handoff` event
({state, session_id}), the notice as `token` events, then `done` with its usual fields."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.server.chat_gate import run_sync
from app.server.db import UnknownSession

if TYPE_CHECKING:
    from app.chat.small_talk import SmallTalkMatch
    from app.server.access import Caller
    from app.server.handoff import Handoffs
    from app.server.services import Services

Detector = Callable[[str], "SmallTalkMatch | None"]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class LazyPhrases:
    """The phrase detector, built on first use (the exemplars' vectors need the model); None
    for a model without a calibrated threshold (app.server.handoff_phrase)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._built = False
        self._detect: Detector | None = None

    def __call__(self, text: str) -> SmallTalkMatch | None:
        with self._lock:
            if not self._built:
                from app.server.handoff_phrase import HandoffPhrases

                settings = self.services.settings
                phrases = HandoffPhrases.for_model(
                    self.services.embedder, settings.prompts_dir, settings.vector_cache_dir
                )
                self._detect = phrases.asks_for_person if phrases is not None else None
                self._built = True
        return self._detect(text) if self._detect is not None else None


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _answer(
    stream: bool,
    session_id: str,
    state: str,
    *,
    text: str = "",
    message_id: int | None = None,
    language: str = "",
) -> Response:
    done: dict[str, Any] = {
        "session_id": session_id,
        "message_id": message_id,
        "language": language,
        "mode": "handoff",
        "grounded": None,
        "error": None,
        "retrieval_ms": 0,
    }
    if not stream:
        body: dict[str, Any] = {**done, "answer": text, "sources": [], "cited": []}
        body["handoff"] = {"state": state}
        return JSONResponse(body)

    def events() -> Iterator[str]:
        yield _sse("handoff", {"state": state, "session_id": session_id})
        if text:
            yield _sse("token", {"text": text})
        yield _sse("done", done)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def handoff_turn(
    request: Request,
    caller: Caller,
    message: str,
    session_id: str | None,
    collection: str,
    stream: bool,
) -> Response | None:
    """The handoff's answer to this chat turn, or None when the chain should answer it. The
    caller has checked that `session_id` is not another assistant's."""
    handoffs: Handoffs = request.app.state.handoffs
    state = await run_sync(lambda: handoffs.open_state(session_id))
    if state is not None and session_id:  # a person has it: store, tell, ask no LLM
        await run_sync(lambda: handoffs.store_visitor_message(session_id, message))
        return _answer(stream, session_id, state)
    key = caller.assistant
    if key is None or not key.settings.handoff.enabled:
        return None
    detect: Detector = request.app.state.handoff_phrases
    match = await run_sync(lambda: detect(message))
    if match is None:
        return None
    services: Services = request.app.state.services
    language = match.language

    def start() -> tuple[str, str, str, int]:
        try:
            session = services.conversations.open_session(session_id, collection, key.assistant)
        except UnknownSession as exc:
            raise HTTPException(404, "no such session") from exc
        handoffs.store_visitor_message(session, message, language)
        started = handoffs.request(session, key.assistant, key.settings, "phrase", language)
        notice = handoffs.store_notice(session, started.message, language)
        return session, started.state, started.message, notice

    session, started_state, text, notice_id = await run_sync(start)
    return _answer(
        stream, session, started_state, text=text, message_id=notice_id, language=language
    )


async def offer_handoff(request: Request, caller: Caller, session_id: str) -> bool:
    """Whether this answer should offer a person (the widget then shows the button)."""
    key = caller.assistant
    if key is None or not key.settings.handoff.enabled:
        return False
    handoffs: Handoffs = request.app.state.handoffs
    return await run_sync(lambda: handoffs.offer_due(session_id, key.settings))
