"""The OpenAI stub server against the real `openai` client and `langchain_openai.ChatOpenAI`."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.openai_stub import OpenAIStub

REPLY = "Stub answer [1]. Second  sentence, with  double spaces."


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=REPLY) as s:
        yield s


def _client(stub: OpenAIStub, **kwargs: Any) -> openai.OpenAI:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 5}
    options.update(kwargs)
    return openai.OpenAI(base_url=stub.base_url, api_key="test", **options)


def _ask(client: openai.OpenAI, text: str = "hello") -> str | None:
    out = client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": text}]
    )
    return out.choices[0].message.content


def test_non_streaming_completion_and_recording(stub: OpenAIStub) -> None:
    client = _client(stub)
    out = client.chat.completions.create(
        model="my-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital?"},
        ],
        temperature=0.1,
    )
    assert out.choices[0].message.content == REPLY
    assert out.choices[0].finish_reason == "stop"
    assert out.model == "my-model"
    assert out.id == "chatcmpl-stub-1"
    assert out.usage is not None
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens

    assert len(stub.requests) == 1
    assert stub.requests[0]["model"] == "my-model"
    assert stub.requests[0]["temperature"] == 0.1
    assert stub.headers[0]["authorization"] == "Bearer test"
    assert stub.headers[0]["content-type"].startswith("application/json")
    assert stub.last_user_message() == "What is the capital?"
    assert stub.all_prompt_text() == "Be brief.\nWhat is the capital?"


def test_streaming_completion_joins_to_reply(stub: OpenAIStub) -> None:
    client = _client(stub)
    stream = client.chat.completions.create(
        model="stub-model",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert "".join(pieces) == REPLY
    assert len(pieces) > 3  # really split, not one blob
    assert finish == ["stop"]
    assert usage is not None and usage.completion_tokens > 0
    assert stub.requests[0]["stream"] is True


def test_reply_function_and_list_content() -> None:
    def reply(body: dict[str, Any]) -> str:
        return f"echo: {body['messages'][-1]['content'][0]['text']}"

    with OpenAIStub(reply=reply) as stub:
        out = _client(stub).chat.completions.create(
            model="stub-model",
            messages=[{"role": "user", "content": [{"type": "text", "text": "ping"}]}],
        )
        assert out.choices[0].message.content == "echo: ping"
        assert stub.last_user_message() == "ping"
        assert stub.all_prompt_text(0) == "ping"


def test_models_endpoint(stub: OpenAIStub) -> None:
    assert [m.id for m in _client(stub).models.list()] == ["stub-model"]
    with urllib.request.urlopen(f"{stub.base_url}/models", timeout=5) as resp:
        assert json.load(resp)["object"] == "list"
    assert stub.requests == []  # only chat requests are recorded


def test_500_raises_internal_server_error(stub: OpenAIStub) -> None:
    stub.mode = "500"
    with pytest.raises(openai.InternalServerError) as info:
        _ask(_client(stub))
    assert info.value.status_code == 500
    assert "stub failure" in str(info.value)
    assert len(stub.requests) == 1  # recorded even though it failed


def test_429_raises_rate_limit_error(stub: OpenAIStub) -> None:
    stub.mode = "429"
    with pytest.raises(openai.RateLimitError) as info:
        _ask(_client(stub))
    assert info.value.response.headers["retry-after"] == "0"
    assert len(stub.requests) == 1


def test_hang_times_out_and_stop_is_fast() -> None:
    stub = OpenAIStub(reply=REPLY).start()
    try:
        stub.mode = "hang"
        with pytest.raises(openai.APITimeoutError):
            _ask(_client(stub, timeout=0.5))
        assert len(stub.requests) == 1
    finally:
        began = time.monotonic()
        stub.stop()
        assert time.monotonic() - began < 2.0


def test_hang_then_answers(stub: OpenAIStub) -> None:
    stub.mode = "hang"
    stub.hang_seconds = 0.2
    assert _ask(_client(stub)) == REPLY


def test_down_refuses_connections(stub: OpenAIStub) -> None:
    assert _ask(_client(stub)) == REPLY
    stub.mode = "down"
    with pytest.raises(openai.APIConnectionError):
        _ask(_client(stub))
    assert len(stub.requests) == 1


def test_fail_times_lets_retries_succeed(stub: OpenAIStub) -> None:
    stub.mode = "500"
    stub.fail_times = 2
    assert _ask(_client(stub, max_retries=3)) == REPLY
    assert len(stub.requests) == 3
    # The openai client numbers its retries in a header.
    assert [h.get("x-stainless-retry-count") for h in stub.headers] == ["0", "1", "2"]


def test_unknown_mode_rejected(stub: OpenAIStub) -> None:
    with pytest.raises(ValueError):
        stub.mode = "teapot"


def test_langchain_chat_openai(stub: OpenAIStub) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="stub-model", base_url=stub.base_url, api_key="test", max_retries=0, max_tokens=50
    )
    assert llm.invoke("hi").content == REPLY
    assert stub.last_user_message() == "hi"
    # ChatOpenAI (langchain-openai 1.x) sends `max_tokens` as `max_completion_tokens`.
    assert stub.requests[-1].get("max_completion_tokens") == 50
    assert "max_tokens" not in stub.requests[-1]

    chunks = [chunk.content for chunk in llm.stream("hi")]
    assert "".join(str(c) for c in chunks) == REPLY
    assert stub.requests[-1]["stream"] is True
    assert len(stub.requests) == 2
