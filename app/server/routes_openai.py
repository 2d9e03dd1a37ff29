"""An OpenAI-compatible face: any OpenAI client or chat front end can talk to a knowledge base.
The model name selects the collection; the sources travel in an extra `sources` field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.chat.types import ChatResult, Done, Token, Turn
from app.server.access import ChatCaller, spend_chat
from app.server.chat_gate import RETRY_AFTER_S, ChatsBusy, run_sync
from app.server.inputs import Text
from app.server.routes_chat import KEEPALIVE, admit, gated_events
from app.server.services import NotFound, Services


class ContentPart(BaseModel):
    """One part of a message's content; only `text` parts reach the chain."""

    model_config = ConfigDict(extra="allow")
    type: Text = Field(max_length=64)
    text: Text | None = None


class Message(BaseModel):
    role: Text = Field(max_length=32)
    content: Text | list[ContentPart] | None = None


class CompletionRequest(BaseModel):
    model: Text = Field(max_length=512)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, list):
        return "\n".join(p.text or "" for p in content if p.type == "text")
    return content or ""


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def openai_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai-compatible"])

    @router.get("/models")
    def models(request: Request, caller: ChatCaller) -> dict[str, Any]:
        """Each knowledge base is a model."""
        services: Services = request.app.state.services
        names = [c["name"] for c in services.collections()]
        if caller.widget:
            names = [n for n in names if n == caller.widget.collection]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "kbchat"} for n in names
            ],
        }

    @router.post("/chat/completions", dependencies=[Depends(spend_chat)])
    async def completions(request: Request, body: CompletionRequest, caller: ChatCaller) -> Any:
        """A chat completion over a knowledge base. When the LLM failed, `kbchat.error` holds a
        stable code and `finish_reason` is "length" if its text was cut short; 503 with
        Retry-After when too many chats are in progress."""
        services: Services = request.app.state.services
        deadline = time.monotonic() + services.settings.llm.deadline
        server = services.settings.server
        if len(body.messages) > server.max_conversation_messages:
            return _error(
                422,
                f"a conversation may carry at most {server.max_conversation_messages} messages",
                "invalid_request_error",
            )
        collection = caller.collection(body.model, services.settings.collection)
        turns = [
            Turn("user" if m.role == "user" else "assistant", _text(m.content))
            for m in body.messages
            if m.role in {"user", "assistant"}
        ]
        if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
            return _error(
                400, "the last message must be a non-empty user message", "invalid_request_error"
            )
        limit = server.max_message_chars
        if len(turns[-1].content) > limit:
            return _error(
                422, f"message is longer than {limit} characters", "invalid_request_error"
            )
        total = sum(len(t.content) for t in turns)
        if total > server.max_conversation_chars:
            return _error(
                422,
                f"the conversation is longer than {server.max_conversation_chars} characters",
                "invalid_request_error",
            )
        try:
            chain = await run_sync(lambda: services.chain(collection))
        except NotFound as exc:
            return _error(404, str(exc), "not_found_error")
        try:
            ticket = admit(request)
        except ChatsBusy:
            response = _error(
                503, f"too many chats in progress; try again in {RETRY_AFTER_S} s", "server_error"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response

        def events() -> Iterator[Token | Done]:
            return chain.stream(turns[-1].content, turns[:-1], deadline=deadline)

        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                await ticket.wait(deadline)
                result = await run_sync(
                    lambda: chain.invoke(turns[-1].content, turns[:-1], deadline=deadline)
                )
            finally:
                ticket.release()
            return _completion(ident, created, collection, result)
        interval = services.settings.server.sse_keepalive
        return StreamingResponse(
            _chunks(ident, created, collection, gated_events(ticket, deadline, interval, events)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


def _extra(result: ChatResult) -> dict[str, Any]:
    return {
        "sources": [asdict(s) for s in result.sources],
        "kbchat": {
            "language": result.language,
            "mode": result.mode,
            "grounded": result.grounded,
            "cited": result.cited,
            "error": result.error,
        },
    }


def _completion(ident: str, created: int, model: str, result: ChatResult) -> dict[str, Any]:
    words = len(result.answer.split())
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": result.finish_reason,
                "message": {"role": "assistant", "content": result.answer},
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
        **_extra(result),
    }


async def _chunks(
    ident: str, created: int, model: str, events: AsyncIterator[Token | Done | None]
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        if event is None:
            yield KEEPALIVE
        elif isinstance(event, Token):
            yield chunk({"content": event.text})
        else:
            yield chunk({}, event.result.finish_reason, **_extra(event.result))
    yield "data: [DONE]\n\n"
