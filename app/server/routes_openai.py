"""An OpenAI-compatible face: any OpenAI client or chat front end can talk to a knowledge base.
The model name selects the collection; the sources travel in an extra `sources` field, kbchat's
own fields in `kbchat` (README: "The OpenAI-compatible API"). Errors have OpenAI's shape
(`app.server.openai_errors`); `usage` is explained in `app.server.openai_usage`."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.chat.types import AnswerOptions, ChatResult, Done, Token, Turn
from app.server.access import ChatCaller, spend_chat
from app.server.assistant_access import spend_assistant_caps
from app.server.chat_gate import RETRY_AFTER_S, ChatsBusy, run_sync
from app.server.inputs import Text
from app.server.openai_errors import INTERNAL, RESPONSES, OpenAIError, OpenAIRoute
from app.server.openai_usage import token_counter, usage
from app.server.routes_chat import KEEPALIVE, SSE_HEADERS, admit, gated_events
from app.server.services import NotFound, Services
from app.settings import Settings
from app.store import collection_names

log = logging.getLogger(__name__)
INSTRUCTION_ROLES = {"system", "developer"}  # "developer" is OpenAI's newer name for system


class ContentPart(BaseModel):
    """One part of a message's content; only `text` parts reach the chain."""

    model_config = ConfigDict(extra="allow")
    type: Text = Field(max_length=64)
    text: Text | None = None


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model: Text = Field(max_length=512)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, list):
        return "\n".join(p.text or "" for p in content if p.type == "text")
    return content or ""


def _refuse_unsupported(body: CompletionRequest) -> None:
    """What kbchat cannot do is refused, not silently ignored."""
    if body.n is not None and body.n > 1:
        raise OpenAIError(
            400, "n must be 1: kbchat answers with one choice", param="n", code="unsupported_value"
        )
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise OpenAIError(
                400,
                f"'{name}' is not supported: kbchat answers from its knowledge base only",
                param=name,
                code="unsupported_parameter",
            )
    for name in ("tool_choice", "function_call"):
        if getattr(body, name) not in (None, "none"):
            raise OpenAIError(
                400, f"'{name}' is not supported", param=name, code="unsupported_parameter"
            )


def _conversation(body: CompletionRequest, settings: Settings) -> tuple[list[Turn], str]:
    """The turns and the client's instructions (system/developer messages), within limits."""
    server = settings.server
    if len(body.messages) > server.max_conversation_messages:
        raise OpenAIError(
            400,
            f"a conversation may carry at most {server.max_conversation_messages} messages",
            param="messages",
        )
    turns = [
        Turn("user" if m.role == "user" else "assistant", _text(m.content))
        for m in body.messages
        if m.role not in INSTRUCTION_ROLES
    ]
    instructions = "\n\n".join(
        _text(m.content) for m in body.messages if m.role in INSTRUCTION_ROLES
    ).strip()
    if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
        raise OpenAIError(
            400, "the last message must be a non-empty user message", param="messages"
        )
    limit = server.max_message_chars
    if len(turns[-1].content) > limit:
        last = max(i for i, m in enumerate(body.messages) if m.role not in INSTRUCTION_ROLES)
        raise OpenAIError(
            400, f"message is longer than {limit} characters", param=f"messages[{last}].content"
        )
    total = sum(len(t.content) for t in turns) + len(instructions)
    if total > server.max_conversation_chars:
        raise OpenAIError(
            400,
            f"the conversation is longer than {server.max_conversation_chars} characters",
            param="messages",
        )
    return turns, instructions


def _options(body: CompletionRequest, instructions: str, settings: Settings) -> AnswerOptions:
    """The client's temperature and answer length, within the server's caps."""
    temperature = body.temperature
    if temperature is not None:
        temperature = min(temperature, settings.llm.max_temperature)
    wanted = body.max_completion_tokens or body.max_tokens
    max_tokens = None if wanted is None else min(wanted, settings.llm.max_tokens)
    return AnswerOptions(instructions, temperature, max_tokens)


def _model_not_found(name: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{name[:100]}' does not exist: models are this server's knowledge bases "
        "(GET /v1/models)",
        param="model",
        code="model_not_found",
    )


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "kbchat"}


def openai_router() -> APIRouter:
    router = APIRouter(
        prefix="/v1", tags=["openai-compatible"], route_class=OpenAIRoute, responses=RESPONSES
    )

    @router.get("/models")
    def models(request: Request, caller: ChatCaller) -> dict[str, Any]:
        """Each knowledge base is a model."""
        services: Services = request.app.state.services
        names = collection_names(services.client)
        if caller.widget:
            names = [n for n in names if n == caller.widget.collection]
        return {"object": "list", "data": [_model(n) for n in sorted(names)]}

    @router.get("/models/{model_id}")
    def model(request: Request, model_id: str, caller: ChatCaller) -> dict[str, Any]:
        """One knowledge base as a model; 404 `model_not_found` for any other name."""
        services: Services = request.app.state.services
        visible = caller.widget is None or caller.widget.collection == model_id
        if not visible or model_id not in collection_names(services.client):
            raise _model_not_found(model_id)
        return _model(model_id)

    @router.post("/chat/completions", dependencies=[Depends(spend_chat)])
    async def completions(request: Request, body: CompletionRequest, caller: ChatCaller) -> Any:
        """A chat completion over a knowledge base. When the LLM failed, the answer is kbchat's
        localised fallback: `finish_reason` is "length" and `kbchat.degraded` holds the error
        code. 503 with Retry-After when too many chats are in progress."""
        services: Services = request.app.state.services
        settings = services.settings
        deadline = time.monotonic() + settings.llm.deadline
        _refuse_unsupported(body)
        turns, instructions = _conversation(body, settings)
        options = _options(body, instructions, settings)
        collection = caller.collection(body.model, settings.collection)
        try:
            chain = await run_sync(lambda: services.chain(collection))
        except NotFound as exc:
            raise _model_not_found(collection) from exc
        if caller.assistant is not None:  # its caps, persona and model, as on /api/chat
            user_turns = sum(t.role == "user" for t in turns)
            await spend_assistant_caps(request, caller.assistant, None, user_turns)
            assistant = caller.assistant.answer_options(settings)
            options = replace(options, persona=assistant.persona, model=assistant.model)
        try:
            ticket = admit(request)
        except ChatsBusy as exc:
            raise OpenAIError(
                503,
                f"too many chats in progress; try again in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc

        question, history = turns[-1].content, turns[:-1]
        prompt = "\n".join([instructions, *(t.content for t in turns)]).strip()
        reply = _Reply(
            f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), collection, prompt, services
        )

        def events() -> Iterator[Token | Done]:
            stream = chain.stream(question, history, deadline=deadline, options=options)
            return services.metrics.observe_chat(stream)

        if not body.stream:
            try:
                await ticket.wait(deadline)
                result = await run_sync(lambda: _result(events()))
            finally:
                ticket.release()
            return reply.completion(result)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        interval = settings.server.sse_keepalive
        return StreamingResponse(
            reply.chunks(gated_events(ticket, deadline, interval, events), include_usage),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    @router.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown(request: Request, path: str) -> None:
        """Any other /v1 URL: OpenAI's 404, so SDKs raise NotFoundError."""
        raise OpenAIError(404, f"Invalid URL ({request.method} /v1/{path[:200]})")

    return router


def _result(events: Iterator[Token | Done]) -> ChatResult:
    """The answer of a whole (unstreamed) completion, through the same metered stream."""
    return next(e.result for e in events if isinstance(e, Done))


class _Reply:
    """One completion's OpenAI objects: the whole answer, or its chunks."""

    def __init__(self, ident: str, created: int, model: str, prompt: str, services: Services):
        self.ident, self.created, self.model, self.prompt = ident, created, model, prompt
        self.count: Callable[[str], int] = token_counter(services.embedder)

    def extra(self, result: ChatResult) -> dict[str, Any]:
        usage_body, source = usage(result, self.prompt, self.count)
        return {
            "sources": [s.as_dict() for s in result.sources],
            "kbchat": {
                "language": result.language,
                "mode": result.mode,
                "grounded": result.grounded,
                "cited": result.cited,
                "error": result.error,
                "degraded": result.error,  # null, or why this is kbchat's fallback answer
                "usage_source": source,  # "llm", or "tokenizer": counted by kbchat
            },
            "usage": usage_body,
        }

    def completion(self, result: ChatResult) -> dict[str, Any]:
        return {
            "id": self.ident,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason(result),
                    "message": {"role": "assistant", "content": result.answer},
                    "logprobs": None,
                }
            ],
            **self.extra(result),
        }

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def chunks(
        self, events: AsyncIterator[Token | Done | None], include_usage: bool
    ) -> AsyncIterator[str]:
        """OpenAI's chunks; with include_usage every chunk has `usage: null` and a last one
        with no choices carries the usage. A failure mid-stream ends it with an error event
        (which SDKs raise), never with its detail."""

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

        nothing = {"usage": None} if include_usage else {}
        try:
            yield self.chunk(choice({"role": "assistant", "content": ""}), **nothing)
            async for event in events:
                if event is None:
                    yield KEEPALIVE
                elif isinstance(event, Token):
                    yield self.chunk(choice({"content": event.text}), **nothing)
                else:
                    extra = self.extra(event.result)
                    usage_body = extra.pop("usage")
                    finish = finish_reason(event.result)
                    yield self.chunk(choice({}, finish), **extra, **nothing)
                    if include_usage:
                        yield self.chunk([], usage=usage_body)
        except Exception:
            log.exception("/v1 stream failed")
            error = {"message": INTERNAL, "type": "server_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        yield "data: [DONE]\n\n"


def finish_reason(result: ChatResult) -> Literal["stop", "length"]:
    """ "length" for any answer the LLM did not finish: cut short, or kbchat's fallback after an
    LLM fault. The OpenAI SDKs accept only stop/length/tool_calls/content_filter/function_call;
    "length" is the one that means "not a complete answer" (LiteLLM maps incomplete upstream
    answers to it too); content_filter would claim a moderation that did not happen."""
    return "length" if result.error is not None else result.finish_reason
