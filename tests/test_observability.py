"""Logs and metrics over HTTP: JSON log lines with a request id that follows a chat into the LLM
call, an access log that keeps hostile input out, and /metrics parsed by prometheus_client's own
parser. Fast: the toy embedder (tests/fakes.py), a real Chroma, the loopback LLM stub."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeEmbedder
from tests.openai_stub import OpenAIStub

ADMIN = "admin-secret-123"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
DOC = (
    "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a suspended monorail"
    " in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper."
)
QUESTION = "When did the Wuppertal Suspension Railway open?"
REPLY = "It opened in 1901 [1]."
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=REPLY) as server:
        yield server


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Where kbchat's logging writes during the test; the previous set-up is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    yield buffer
    root.handlers[:], root.level = saved[0], saved[1]


def make_app(
    tmp_path: Path, stub: OpenAIStub | None = None, *, with_ui: bool = False, **overrides: Any
) -> Any:
    """An app over a one-document knowledge base, ingested with the toy embedder."""
    from app.ingest import ingest_folder
    from app.server.app import create_app
    from app.settings import load_settings

    llm: dict[str, Any] = {}
    if stub is not None:
        llm = {
            "openai_base_url": stub.base_url,
            "llm": {"model": "stub-model", "max_retries": 0, "timeout": 5},
        }
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
        ingest={"resync_on_start": False},
        retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
        **llm,
        **overrides,
    )
    embedder = FakeEmbedder()
    folder = settings.collections_dir / "default"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "monorail.md").write_text(DOC, encoding="utf-8")
    ingest_folder(settings, folder, "default", embedder=embedder)
    llm_arg: dict[str, Any] = {} if stub is not None else {"llm": None}
    return create_app(settings, embedder=embedder, with_ui=with_ui, **llm_arg)


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics, parsed by prometheus_client: (name, labels) -> value."""
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ logs


def test_json_log_lines_carry_the_request_id_through_a_chat(
    tmp_path: Path, stub: OpenAIStub, logs: io.StringIO
) -> None:
    from app.observability.logging_setup import configure_logging

    configure_logging("info", "json", stream=logs)
    with TestClient(make_app(tmp_path, stub)) as client:
        r = client.post("/api/chat", json={"message": QUESTION}, headers={"X-Request-ID": "lb-42"})
        assert r.status_code == 200 and r.json()["answer"] == REPLY
        assert r.headers["X-Request-ID"] == "lb-42"  # a sane incoming id is kept and echoed
        stub.mode = "500"  # an LLM fault: the chain's warning carries the id too
        r = client.post(
            "/api/chat", json={"message": QUESTION, "stream": True}, headers={"X-Request-ID": "s-7"}
        )
        assert r.status_code == 200 and r.headers["X-Request-ID"] == "s-7"
        generated = client.get("/api/health").headers["X-Request-ID"]
        assert HEX_ID.fullmatch(generated)
    logging.getLogger("uvicorn.error").warning("uvicorn says hello")

    lines = json_lines(logs)  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= set(x) for x in lines)
    first = [x for x in lines if x["request_id"] == "lb-42"]
    loggers = {x["logger"] for x in first}
    assert {"kbchat.chat", "kbchat.access"} <= loggers, first
    llm_call = next(x for x in first if x["logger"].startswith("httpx"))  # the HTTP client's
    assert "/chat/completions" in llm_call["message"]
    summary = next(x for x in first if x["logger"] == "kbchat.chat")
    assert summary["chat_mode"] == "generative" and summary["llm_error"] is None
    assert summary["retrieval_ms"] >= 0 and summary["first_token_ms"] is not None
    access = next(x for x in first if x["logger"] == "kbchat.access")
    assert (access["method"], access["path"], access["status"]) == ("POST", "/api/chat", 200)
    assert access["route"] == "/api/chat" and access["client"] == "testclient"

    streamed = [x for x in lines if x["request_id"] == "s-7"]
    assert any(
        x["logger"] == "app.chat.chain" and "llm_unavailable" in x["message"] for x in streamed
    )
    assert any(
        x["logger"] == "kbchat.chat" and x["llm_error"] == "llm_unavailable" for x in streamed
    )
    assert any(x["request_id"] == generated and x["logger"] == "kbchat.access" for x in lines)
    uvicorn_line = next(x for x in lines if x["logger"] == "uvicorn.error")
    assert uvicorn_line["message"] == "uvicorn says hello" and uvicorn_line["request_id"] is None


HOSTILE_IDS = [
    b"x" * 10_000,  # huge
    b"evil\r\nX-Injected: yes",  # a new header line / a forged log line
    b"evil\nkbchat.access INFO forged",
    b"evil\x00\x1b[31mred",  # control characters, terminal escapes
    b"evil id with spaces",
    "évil-ünicode".encode(),
    b"",
]


def asgi_get(app: Any, path: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One GET straight through the ASGI interface, so header and path bytes arrive exactly as a
    hostile client could send them (HTTP clients refuse to send such bytes)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "root_path": "",
        "query_string": b"key=sk-SECRET-QUERY",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("203.0.113.9", 5555),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return {"status": start["status"], "headers": start["headers"]}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_hostile_request_ids_and_paths_are_never_logged_raw(
    tmp_path: Path, logs: io.StringIO, fmt: Any
) -> None:
    from app.observability.logging_setup import configure_logging

    configure_logging("info", fmt, stream=logs)
    app = make_app(tmp_path)
    echoed = []
    for bad in HOSTILE_IDS:
        r = asgi_get(app, b"/api/health", [(b"x-request-id", bad)])
        assert r["status"] == 200
        ids = [v for k, v in r["headers"] if k.lower() == b"x-request-id"]
        assert len(ids) == 1 and HEX_ID.fullmatch(ids[0].decode()), ids  # replaced, not echoed
        echoed.append(ids[0].decode())
    r = asgi_get(app, b"/no/such\n2026-01-01 INFO forged\x1b[2J", [])
    assert r["status"] == 404
    assert asgi_get(app, b"/" + b"a" * 100_000, [])["status"] == 404
    text = logs.getvalue()
    for needle in (
        "x" * 200,
        "a" * 600,
        "X-Injected",
        "forged\n",
        "evil",
        "\x1b",
        "\x00",
        "sk-SECRET-QUERY",
    ):
        assert needle not in text
    for line in text.splitlines():  # one record per line: nothing could break a line
        if fmt == "json":
            json.loads(line)
        else:
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line), line
    assert all(i in text for i in echoed)  # the access lines carry the replacement ids
    if fmt == "text":
        assert "/no/such\\x0a2026-01-01 INFO forged\\x1b[2J" in text  # escaped, visible


def test_the_access_log_can_be_turned_off(tmp_path: Path, logs: io.StringIO) -> None:
    from app.observability.logging_setup import configure_logging

    configure_logging("info", "json", stream=logs)
    with TestClient(make_app(tmp_path, log={"access": False}, metrics="public")) as client:
        client.get("/api/health")
        health = {"method": "GET", "route": "/api/health", "status": "200"}
        assert value(samples(client), "kbchat_http_requests_total", **health) == 1  # still counted
    assert not [x for x in json_lines(logs) if x["logger"] == "kbchat.access"]


def test_client_libraries_do_not_log_every_request_unless_debug(logs: io.StringIO) -> None:
    """httpx logs each request at INFO (Chroma's heartbeat every few seconds behind a Chroma
    server): at INFO that is noise, at DEBUG it is what one asked for."""
    import logging

    from app.observability.logging_setup import configure_logging

    for level, shown in (("info", False), ("debug", True)):
        logs.truncate(0)
        logs.seek(0)
        configure_logging(level, "json", stream=logs)
        logging.getLogger("httpx").info("HTTP Request: GET http://chroma/api/v2/heartbeat")
        logging.getLogger("httpx").warning("a warning always shows")
        messages = [x["message"] for x in json_lines(logs)]
        assert ("HTTP Request: GET http://chroma/api/v2/heartbeat" in messages) is shown
        assert "a warning always shows" in messages


# --------------------------------------------------------------------------------- metrics


def test_metrics_move_after_a_chat_an_llm_error_a_429_and_a_sync(
    tmp_path: Path, stub: OpenAIStub
) -> None:
    app = make_app(tmp_path, stub, server={"rate_limit": "3/minute"})
    with TestClient(app) as client:
        before = samples(client)
        assert value(before, "kbchat_llm_errors_total", kind="llm_unavailable") == 0  # present
        assert client.post("/api/chat", json={"message": QUESTION}).json()["error"] is None
        stub.mode = "500"
        assert client.post("/api/chat", json={"message": QUESTION}).json()["error"] == (
            "llm_unavailable"
        )
        stub.mode = "ok"
        assert client.post("/api/chat", json={"message": QUESTION}).status_code == 200
        refused = client.post("/api/chat", json={"message": QUESTION})
        assert refused.status_code == 429
        folder = tmp_path / "data" / "collections" / "default"
        (folder / "vesuvius.md").write_text(
            "# Mount Vesuvius\n\nA volcano near Naples; it buried Pompeii in 79.", encoding="utf-8"
        )
        assert client.post("/api/collections/default/sync", headers=AUTH).status_code == 200
        after = samples(client)

    gen = {"mode": "generative"}
    assert value(after, "kbchat_chat_duration_seconds_count", **gen) == 3
    assert value(after, "kbchat_chat_first_token_seconds_count", **gen) == 3
    assert value(after, "kbchat_retrieval_duration_seconds_count") == 3
    assert value(after, "kbchat_llm_errors_total", kind="llm_unavailable") == 1
    assert value(after, "kbchat_llm_errors_total", kind="llm_timeout") == 0
    chat_ok = {"method": "POST", "route": "/api/chat", "status": "200"}
    assert value(after, "kbchat_http_requests_total", **chat_ok) == 3
    assert value(after, "kbchat_http_requests_total", **{**chat_ok, "status": "429"}) == 1
    assert value(after, "kbchat_rate_limited_total", route="/api/chat") == 1
    assert (
        value(after, "kbchat_http_request_duration_seconds_count", method="POST", route="/api/chat")
        == 4
    )
    assert value(after, "kbchat_ingest_documents_total", action="added") == 1
    assert value(after, "kbchat_ingest_chunks_total", action="written") >= 1


def test_v1_completions_are_timed_too(tmp_path: Path, stub: OpenAIStub) -> None:
    import openai

    with TestClient(make_app(tmp_path, stub)) as client:
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
        messages: Any = [{"role": "user", "content": QUESTION}]
        assert sdk.chat.completions.create(model="default", messages=messages).choices
        assert list(sdk.chat.completions.create(model="default", messages=messages, stream=True))
        after = samples(client)
    assert value(after, "kbchat_chat_duration_seconds_count", mode="generative") == 2
    assert value(after, "kbchat_chat_first_token_seconds_count", mode="generative") == 2
    route = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    assert value(after, "kbchat_http_requests_total", **route) == 2


def test_random_paths_and_methods_do_not_create_series(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        baseline = samples(client)
        for i in range(40):
            client.get(f"/random-{i}/x?y={i}")
            client.get(f"/v1/random-{i}")
            client.get(f"/api/sessions/session-{i}")
            client.request(f"BREW{i}", "/api/health")
        after = samples(client)
        text = client.get("/metrics", headers=AUTH).text
    assert "random-" not in text and "session-" not in text and "BREW" not in text
    new_series = {key for key in after if key not in baseline}
    pairs = {(dict(labels).get("method"), dict(labels).get("route")) for _, labels in new_series}
    assert pairs <= {
        ("GET", "unmatched"),
        ("GET", "/v1/{path:path}"),
        ("GET", "/api/sessions/{session_id}"),
        ("GET", "/metrics"),
        ("other", "/api/health"),
        (None, None),
    }, pairs  # 160 requests to 160 URLs with 40 methods: a handful of label sets


def test_metrics_need_the_admin_key_by_default(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        assert client.get("/metrics").status_code == 401
        assert (
            client.get("/metrics", headers={"Authorization": "Bearer wrong-key"}).status_code == 403
        )
        assert client.get("/metrics", headers=AUTH).status_code == 200
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_can_be_public_or_off(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path / "a", metrics="public")) as client:
        r = client.get("/metrics")
        assert r.status_code == 200 and "kbchat_http_requests_total" in r.text
    with TestClient(make_app(tmp_path / "b", metrics="off")) as client:
        assert client.get("/metrics", headers=AUTH).status_code == 404


def test_serve_refuses_an_unknown_log_level() -> None:
    from typer.testing import CliRunner

    from app.cli import app

    result = CliRunner().invoke(app, ["serve", "--log-level", "loud"])
    assert result.exit_code == 2 and "loud" in result.output


def test_kbchat_serve_writes_json_lines_for_uvicorn_and_the_access_log(cli: Any) -> None:
    """The real command: uvicorn's own records and the access log, all JSON, one access line per
    request (uvicorn's access log is off), the request id in the line and the response."""
    import time

    import httpx

    from tests.live_server import free_port

    port = free_port()
    proc = cli.popen(
        "serve",
        "--port",
        str(port),
        "--log-level",
        "info",
        KBCHAT_LOG_FORMAT="json",
        KBCHAT_INGEST_RESYNC_ON_START="false",
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/health", headers={"X-Request-ID": "cli-1"}
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                time.sleep(0.3)
        assert r.headers["X-Request-ID"] == "cli-1"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert all(line.startswith("{") for line in stderr.splitlines() if line.strip()), stderr
    assert any(x["logger"] == "uvicorn.error" and "Started server" in x["message"] for x in lines)
    access = [x for x in lines if x.get("request_id") == "cli-1"]
    assert [(x["logger"], x["path"], x["status"]) for x in access] == [
        ("kbchat.access", "/api/health", 200)
    ]


def test_a_web_ui_chat_logs_with_the_id_of_the_request_that_queued_it(
    tmp_path: Path, logs: io.StringIO
) -> None:
    """Gradio runs the turn in its queue's worker threads, outside the HTTP request's context;
    the chat's records still carry the id of the POST that queued it."""
    import httpx

    from app.observability.logging_setup import configure_logging
    from tests.live_server import live_server

    configure_logging("info", "json", stream=logs)
    with live_server(make_app(tmp_path, with_ui=True)) as base, httpx.Client(base_url=base) as http:
        config = http.get("/config").json()
        send = next(  # the chat turn (message, history, session, collection, ids, assistant)
            c["id"]
            for c in config["components"]
            if c.get("props", {}).get("elem_id") == "kbchat-send"
        )
        respond = next(d["id"] for d in config["dependencies"] if [send, "click"] in d["targets"])
        session = "s" + "0" * 10
        joined = http.post(
            "/gradio_api/queue/join",
            json={
                "data": [QUESTION, None, None, "default", None, None],
                "fn_index": respond,
                "session_hash": session,
            },
            headers={"X-Request-ID": "ui-9"},
        )
        assert joined.status_code == 200 and joined.headers["X-Request-ID"] == "ui-9"
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["msg"] == "process_completed":
                    break
    chat = [x for x in json_lines(logs) if x["logger"] == "kbchat.chat"]
    assert [x["request_id"] for x in chat] == ["ui-9"], chat
