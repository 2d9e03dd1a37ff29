"""LLM faults over real HTTP: a cut stream, upstream errors, a hung LLM under load.

The app runs under uvicorn on loopback (tests/live_server.py) with the real E5 model and Chroma;
the LLM is the loopback stub (tests/openai_stub.py) in its fault modes.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import live_server
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration

DOCS = {
    "monorail.md": "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a "
    "suspended monorail in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper.",
}
QUESTION = "When did the Wuppertal Suspension Railway open?"
REPLY = "The railway opened in 1901 and it still runs today above the river [1]."
PARTIAL = "The railway opened "  # what a "cut" stream with cut_after=3 delivers


@pytest.fixture(scope="module")
def kb_dir(ingest_docs: Any) -> Path:
    return ingest_docs("faults", DOCS) / "data"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=REPLY) as server:
        yield server


def settings_for(kb_dir: Path, tmp_path: Path, stub: OpenAIStub, **overrides: Any) -> Any:
    from app.settings import load_settings

    llm = {"model": "stub-model", "max_retries": 0, "timeout": 5, **overrides.pop("llm", {})}
    return load_settings(
        data_dir=kb_dir,
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        openai_base_url=stub.base_url,
        llm=llm,
        **overrides,
    )


def make_app(settings: Any, e5: Any, *, with_ui: bool = False) -> Any:
    from app.server.app import create_app

    return create_app(settings, embedder=e5, with_ui=with_ui)


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) per SSE block; comments come back as ("comment", text)."""
    out = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        if block.startswith(":"):
            out.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", "message"), fields.get("data", "")))
    return out


def ask_everywhere(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """One question through each API door; what each said, normalised."""
    out: dict[str, dict[str, Any]] = {}
    body = http.post("/api/chat", json={"message": QUESTION}).json()
    out["api json"] = {"answer": body["answer"], "error": body["error"], "raw": json.dumps(body)}
    out["api json"]["session"] = body["session_id"]

    raw = http.post("/api/chat", json={"message": QUESTION, "stream": True}).text
    events = sse_events(raw)
    tokens = "".join(json.loads(d)["text"] for e, d in events if e == "token")
    done = json.loads(next(d for e, d in events if e == "done"))
    out["api sse"] = {"answer": tokens, "error": done["error"], "raw": raw}
    out["api sse"]["session"] = done["session_id"]

    request = {"model": "default", "messages": [{"role": "user", "content": QUESTION}]}
    body = http.post("/v1/chat/completions", json=request).json()
    choice = body["choices"][0]
    out["v1 json"] = {
        "answer": choice["message"]["content"],
        "error": body["kbchat"]["error"],
        "finish_reason": choice["finish_reason"],
        "raw": json.dumps(body),
    }

    raw = http.post("/v1/chat/completions", json={**request, "stream": True}).text
    chunks = [json.loads(d) for e, d in sse_events(raw) if e == "message" and d != "[DONE]"]
    last = chunks[-1]
    out["v1 stream"] = {
        "answer": "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks),
        "error": last["kbchat"]["error"],
        "finish_reason": last["choices"][0]["finish_reason"],
        "raw": raw,
    }
    return out


def test_cut_stream_is_incomplete_on_every_endpoint(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    from app.chat.prompts import load_prompts

    settings = settings_for(kb_dir, tmp_path, stub, llm={"max_retries": 2})
    fallback = load_prompts(settings.prompts_dir).message("en", "llm_error")
    with live_server(make_app(settings, e5)) as url, httpx.Client(base_url=url, timeout=30) as http:
        ok = ask_everywhere(http)
        stub.mode, stub.cut_after = "cut", 3
        cut = ask_everywhere(http)
        for door, seen in ok.items():
            assert seen["answer"] == REPLY and seen["error"] is None, door
            assert seen.get("finish_reason", "stop") == "stop", door
        for door, seen in cut.items():
            assert seen["error"] == "llm_incomplete", door
            assert seen["answer"].startswith(PARTIAL + "\n\n" + fallback), door
            assert "[1]" in seen["answer"] and "suspended monorail" in seen["answer"], door
            assert seen.get("finish_reason", "length") == "length", door
        for door in ("api json", "api sse"):  # stored as incomplete, not as a finished answer
            stored = http.get(f"/api/sessions/{cut[door]['session']}").json()["messages"][-1]
            assert stored["error"] == "llm_incomplete" and stored["content"] == cut[door]["answer"]
            stored = http.get(f"/api/sessions/{ok[door]['session']}").json()["messages"][-1]
            assert stored["error"] is None and stored["content"] == REPLY
    assert len(stub.requests) == 8  # text had arrived: no retry repeats it


def test_gradio_chat_flags_a_cut_stream(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    """The Gradio chat's own handler, as the UI calls it, over the same Services."""
    from app.server.services import Services
    from app.server.ui import build_ui

    app = make_app(settings_for(kb_dir, tmp_path, stub), e5)
    services: Services = app.state.services
    blocks = build_ui(services)
    respond = next(f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "respond")
    stub.mode, stub.cut_after = "cut", 3
    params = inspect.signature(respond).parameters
    args = {name: QUESTION if name == "message" else None for name in params}
    outputs = list(respond(**args))
    chat = next(o for out in reversed(outputs) for o in out if isinstance(o, list) and o)
    shown = str(chat[-1]["content"])
    assert shown.startswith(PARTIAL.strip()) and "suspended monorail" in shown
    session = next(o for o in outputs[-1] if isinstance(o, str) and len(o) == 32)
    stored = services.conversations.conversation(session)["messages"][-1]
    assert stored["error"] == "llm_incomplete"


@pytest.mark.parametrize("mode", ["500", "down", "429"])
def test_upstream_details_never_reach_the_client(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub, mode: str
) -> None:
    settings = settings_for(kb_dir, tmp_path, stub)
    with live_server(make_app(settings, e5)) as url, httpx.Client(base_url=url, timeout=30) as http:
        stub.mode = mode
        seen = ask_everywhere(http)
        session = http.get(f"/api/sessions/{seen['api json']['session']}").text
    expected = {"500": "llm_unavailable", "down": "llm_unavailable", "429": "llm_rate_limited"}
    port = stub.base_url.split(":")[-1].split("/")[0]
    for door, said in seen.items():
        assert said["error"] == expected[mode], door
        for secret in ("stub failure", "stub rate limit", "Error code", "Connection error", port):
            assert secret not in said["raw"], (door, secret)
        assert "Error" not in said["raw"].replace("llm_error", ""), door  # no exception class
    assert "stub failure" not in session and "Error" not in session


def answer_once_then_hang(url: str, stub: OpenAIStub) -> None:
    """A first answer, so the chain's one-off work (built on the first chat) is not timed with
    the hung chats; then the LLM hangs and its record starts empty."""
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/api/ready").status_code == 200
        assert http.post("/api/chat", json={"message": QUESTION}).status_code == 200
    stub.mode, stub.hang_seconds = "hang", 60
    stub.requests.clear()


def test_hung_llm_keeps_the_server_up(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    """40 chats at once on a hung LLM: health stays fast, the excess gets 503 + Retry-After at
    once, every admitted chat ends by the deadline with the fallback, SSE sees keep-alives."""
    deadline, running, queued, total = 2.0, 4, 8, 40
    settings = settings_for(
        kb_dir,
        tmp_path,
        stub,
        llm={"deadline": deadline, "timeout": 60, "max_retries": 2},
        server={
            "rate_limit": "1000/minute",  # one budget per client: 40 chats from one address
            "max_concurrent_chats": running,
            "max_queued_chats": queued,
            "sse_keepalive": 0.3,
        },
    )
    health: list[float] = []
    stop = threading.Event()

    def poll_health(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                started = time.monotonic()
                assert http.get("/api/health").status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.05)

    def chat(http: httpx.Client, n: int) -> tuple[int, float, str, dict[str, str]]:
        kind = ("api json", "api sse", "v1 json", "v1 stream")[n % 4]
        stream = kind.endswith(("sse", "stream"))
        if kind.startswith("api"):
            path, body = "/api/chat", {"message": QUESTION, "stream": stream}
        else:
            path = "/v1/chat/completions"
            body = {"model": "default", "messages": [{"role": "user", "content": QUESTION}]}
            body["stream"] = stream
        started = time.monotonic()
        r = http.post(path, json=body)
        return r.status_code, time.monotonic() - started, r.text, dict(r.headers)

    app = make_app(settings, e5)
    with live_server(app) as url:
        answer_once_then_hang(url, stub)
        watcher = threading.Thread(target=poll_health, args=(url,), daemon=True)
        watcher.start()
        limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
        with (
            httpx.Client(base_url=url, timeout=30, limits=limits) as http,
            ThreadPoolExecutor(total) as pool,
        ):
            results = list(pool.map(lambda n: chat(http, n), range(total)))
        with httpx.Client(base_url=url, timeout=5) as http:
            started = time.monotonic()
            assert http.get("/api/ready").status_code == 200
            assert time.monotonic() - started < 1
        stop.set()
        watcher.join(timeout=5)

    refused = [r for r in results if r[0] == 503]
    answered = [r for r in results if r[0] == 200]
    assert len(refused) + len(answered) == total
    assert len(answered) >= running + queued and len(refused) >= 1
    for _, took, _, headers in refused:
        assert headers["retry-after"].isdigit() and took < 1.5
    for _, took, text, _ in answered:
        assert took < deadline + 4  # the deadline, plus retrieval on a busy CPU
        assert "llm_timeout" in text and "suspended monorail" in text
    streams = [text for _, _, text, head in answered if "event-stream" in head["content-type"]]
    assert streams and all(": keep-alive" in text for text in streams)
    assert health and max(health) < 1.0, max(health)
    assert len(stub.requests) <= running + queued  # the LLM never saw more than was admitted


def test_chat_slots_held_by_a_hung_llm_leave_threads_for_the_rest(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    """Each running API chat holds a worker thread while it waits for the LLM. With more chat
    slots than anyio's default pool (40 threads), all taken by a hung LLM, a route that runs in
    a worker thread (the collection list) still answers at once, and the chats end by their
    deadline."""
    running = 48
    settings = settings_for(
        kb_dir,
        tmp_path,
        stub,
        llm={"deadline": 4.0, "timeout": 60, "max_retries": 0},
        server={"rate_limit": "1000/minute", "max_concurrent_chats": running},
    )
    app = make_app(settings, e5)
    with live_server(app) as url:
        answer_once_then_hang(url, stub)
        limits = httpx.Limits(max_connections=running, max_keepalive_connections=running)
        with (
            httpx.Client(base_url=url, timeout=30, limits=limits) as http,
            ThreadPoolExecutor(running) as pool,
        ):
            chats = [
                pool.submit(http.post, "/api/chat", json={"message": f"{QUESTION} ({n})"})
                for n in range(running)
            ]
            waited = time.monotonic() + 15
            while len(stub.requests) < running and time.monotonic() < waited:
                time.sleep(0.05)
            assert len(stub.requests) >= running  # every slot waits on the LLM, in a thread
            with httpx.Client(base_url=url, timeout=10) as other:
                started = time.monotonic()
                assert other.get("/api/collections").status_code == 200
                assert time.monotonic() - started < 1.0
            answers = [chat.result() for chat in chats]
    assert all(a.status_code == 200 and "llm_timeout" in a.text for a in answers)


def test_old_database_gains_the_error_column(tmp_path: Path) -> None:
    """A conversations DB made by kbchat 0.1.0 (create_all, before answers stored their error
    state, no Alembic) is adopted by the migrations and keeps working."""
    from app.chat.types import ChatResult
    from app.server.db import ConversationStore

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE sessions (id VARCHAR(64) PRIMARY KEY, collection VARCHAR(512),
                created DATETIME);
            CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id VARCHAR(64), role
                VARCHAR(16), content TEXT, sources TEXT, language VARCHAR(16), mode VARCHAR(16),
                created DATETIME);
            CREATE TABLE feedback (id INTEGER PRIMARY KEY, message_id INTEGER, rating
                VARCHAR(8), comment TEXT, created DATETIME);
            INSERT INTO sessions VALUES ('s1', 'default', '2026-01-01 00:00:00');
            INSERT INTO messages VALUES (1, 's1', 'assistant', 'old answer', '[]', 'en',
                'generative', '2026-01-01 00:00:00');
            """
        )
    store = ConversationStore(f"sqlite:///{path}")
    ConversationStore(f"sqlite:///{path}")  # twice: adopting and upgrading are idempotent
    result = ChatResult("cut [1]", [], "en", "generative", True, error="llm_incomplete")
    store.add_exchange("s1", "q", result)
    messages = store.conversation("s1")["messages"]
    assert messages[0]["content"] == "old answer" and messages[0]["error"] is None
    assert messages[-1]["error"] == "llm_incomplete"


def test_openai_sdk_reads_keepalives_and_a_cut_answer(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    """The official client skips the keep-alive comments and accepts the finish reasons."""
    import openai

    settings = settings_for(
        kb_dir, tmp_path, stub, llm={"deadline": 1.5}, server={"sse_keepalive": 0.2}
    )
    messages: Any = [{"role": "user", "content": QUESTION}]
    with live_server(make_app(settings, e5)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)
        stub.mode, stub.hang_seconds = "hang", 60
        chunks = list(
            client.chat.completions.create(model="default", messages=messages, stream=True)
        )
        stub.mode, stub.cut_after = "cut", 3
        cut = client.chat.completions.create(model="default", messages=messages)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "suspended monorail" in text
    assert chunks[-1].model_extra["kbchat"]["error"] == "llm_timeout"
    assert cut.choices[0].finish_reason == "length"
    assert cut.model_extra is not None and cut.model_extra["kbchat"]["error"] == "llm_incomplete"


def test_a_visitor_who_stops_the_answer_stops_the_llm_call(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    """The widget's Stop closes the SSE stream; the server then closes its stream to the LLM
    instead of paying for the rest of an answer nobody reads."""
    stub.reply = " ".join(["word"] * 400)
    stub.piece_delay = 0.05  # 20 s for the whole answer
    settings = settings_for(kb_dir, tmp_path, stub, llm={"deadline": 60, "timeout": 60})
    with live_server(make_app(settings, e5)) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", "/api/chat", json={"message": QUESTION, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event: token"):
                    break  # the visitor saw the first words and pressed Stop
        assert stub.abandoned.wait(10), "the LLM kept streaming to the server after Stop"


def test_ready_is_bounded_when_the_store_hangs(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    """A store whose heartbeat hangs makes the server not ready, quickly; liveness unaffected."""
    from fastapi.testclient import TestClient

    from app.server.app import create_app
    from app.settings import load_settings
    from app.store import make_client

    settings = load_settings(data_dir=kb_dir, database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}")
    store = make_client(settings)
    release = threading.Event()

    class HangingHeartbeat:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def heartbeat(self) -> int:
            release.wait(30)
            return 0

    app = create_app(settings, embedder=e5, client=HangingHeartbeat(), with_ui=False)  # type: ignore[arg-type]
    try:
        with TestClient(app) as http:
            for _ in range(3):  # the first hung check must not hold up the next ones
                started = time.monotonic()
                response = http.get("/api/ready")
                assert response.status_code == 503 and time.monotonic() - started < 4
                assert response.json()["store"] is False
            started = time.monotonic()
            assert http.get("/api/health").status_code == 200
            assert time.monotonic() - started < 1
    finally:
        release.set()
