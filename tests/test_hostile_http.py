"""Hostile HTTP: every door holds its limits (bodies, rates, admin guesses, hosts, proxies) and
malformed input is a 4xx with a message, never a 500. Real model, real Chroma, real HTTP where
the transport matters (chunked bodies)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.live_server import live_server

pytestmark = pytest.mark.integration

ADMIN = "admin-secret-123"


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Path:
    from app.ingest import ingest_folder
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("hostile")
    folder = base / "docs"
    folder.mkdir()
    (folder / "volcano.md").write_text(
        "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. Its eruption in "
        "the year 79 buried the Roman cities of Pompeii and Herculaneum under ash.",
        encoding="utf-8",
    )
    ingest_folder(load_settings(data_dir=base / "data"), folder, "default", embedder=e5)
    return base / "data"


def make_app(kb_dir: Path, tmp_path: Path, e5: Any, *, ui: bool = False, **overrides: Any) -> Any:
    """The real app in extractive mode (no LLM), its own conversations database."""
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=kb_dir, database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}", **overrides
    )
    return create_app(settings, embedder=e5, llm=None, with_ui=ui)


MULTIPART = "multipart/form-data; boundary=kbchatboundary"
FILE_PART = (
    b'--kbchatboundary\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
)


def send_chunked(
    base: str,
    path: str,
    total: int,
    content_type: str = "application/json",
    start: bytes = b"",
    chunk: int = 64 * 1024,
    extra: str = "",
) -> tuple[int, int]:
    """POST `start` then `total` bytes with Transfer-Encoding: chunked (no Content-Length) on a
    raw socket, stopping as soon as the server answers. Returns (status, bytes sent by then)."""
    url = urlsplit(base)
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
        )
        if start:
            s.sendall(f"{len(start):x}\r\n".encode() + start + b"\r\n")
        piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
        answered = select.poll()  # poll, not select: a long test run may hold fds above 1023
        answered.register(s, select.POLLIN)
        try:
            while sent < total:
                if answered.poll(0):
                    break  # the server answered before the body ended
                s.sendall(piece)
                sent += chunk
            else:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        head = s.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1]), sent


# ----------------------------------------------------------------------------------- bodies
def test_chunked_bodies_are_counted_and_refused(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    app = make_app(kb_dir, tmp_path, e5, server={"max_body_kb": 64})
    with live_server(app) as base:
        status, sent = send_chunked(base, "/api/chat", total=32 * 2**20)
        assert status == 413
        assert sent < 4 * 2**20  # refused while it was arriving, not after 32 MiB
        status, _ = send_chunked(base, "/v1/chat/completions", total=2 * 2**20)
        assert status == 413


def test_gradio_upload_gets_the_upload_limit_and_a_rate_limit(
    kb_dir: Path, tmp_path: Path, e5: Any
) -> None:
    app = make_app(
        kb_dir,
        tmp_path,
        e5,
        ui=True,
        server={"max_upload_mb": 2, "upload_rate_limit": "3/minute"},
    )
    with live_server(app) as base:
        import httpx

        files = {"files": ("notes.txt", b"a" * (1024 * 1024), "text/plain")}
        ok = httpx.post(f"{base}/gradio_api/upload", files=files, timeout=30)
        assert ok.status_code == 200, ok.text  # 1 MiB: over the JSON limit, within uploads
        status, sent = send_chunked(
            base, "/gradio_api/upload", total=64 * 2**20, content_type=MULTIPART, start=FILE_PART
        )
        assert status == 413 and sent < 16 * 2**20  # 2 MiB read, the rest socket buffers
        codes = [
            httpx.post(f"{base}/gradio_api/upload", files=files, timeout=30).status_code
            for _ in range(2)
        ]
        assert codes[-1] == 429


def test_admin_upload_limit_needs_an_admin_key(tmp_path: Path, e5: Any) -> None:
    app = make_app(
        tmp_path / "kb",
        tmp_path,
        e5,
        admin_api_key=ADMIN,
        server={"max_body_kb": 1, "admin_failures": "2/minute"},
    )
    files = {"files": ("notes.txt", b"Vesuvius is a volcano. " * 200, "text/plain")}  # 4.6 KB
    with live_server(app) as base:
        import httpx

        url = f"{base}/api/collections/notes/documents"
        anonymous = httpx.post(url, files=files)
        assert anonymous.status_code == 413  # not read into a temp file just to answer 401
        admin = httpx.post(
            url, files=files, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120
        )
        assert admin.status_code == 200, admin.text
        wrong = {"Authorization": "Bearer wrong-key"}
        assert [httpx.post(url, files=files, headers=wrong).status_code for _ in range(2)] == [
            403,
            403,
        ]
        status, sent = send_chunked(
            base,
            "/api/collections/notes/documents",
            total=64 * 2**20,
            content_type=MULTIPART,
            start=FILE_PART,
            extra="Authorization: Bearer wrong-key\r\n",
        )
        assert status == 429 and sent < 16 * 2**20  # locked out: refused before the body


# ------------------------------------------------------------------------------ rate budget
def test_one_rate_budget_across_api_doors(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    app = make_app(kb_dir, tmp_path, e5, server={"rate_limit": "3/minute"})
    chat = {"message": "volcano"}
    completion = {"model": "default", "messages": [{"role": "user", "content": "volcano"}]}
    with TestClient(app) as client:
        assert client.post("/api/chat", json=chat).status_code == 200
        assert client.post("/v1/chat/completions", json=completion).status_code == 200
        assert client.post("/api/chat", json=chat).status_code == 200
        refused = client.post("/v1/chat/completions", json=completion)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert client.post("/api/chat", json=chat).status_code == 429


def test_widget_keys_keep_their_own_budget(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    key = {"key": "pk_test_12345", "collection": "default", "origins": []}
    app = make_app(kb_dir, tmp_path, e5, widget_keys=[key], server={"rate_limit": "2/minute"})
    headers = {"X-Kbchat-Key": key["key"]}
    codes = [
        TestClient(app, client=(f"192.0.2.{i}", 4000))
        .post("/api/chat", json={"message": "volcano"}, headers=headers)
        .status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]  # three visitors, one site's key: the key's budget is spent


def test_gradio_chat_spends_the_same_budget(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    """The Gradio chat event, called as the page calls it (queue join by index; it has no API
    name), spends the budget /api/chat spends."""
    import httpx

    from tests.test_hostile_gradio import Hostile, benign_value, dependency

    app = make_app(kb_dir, tmp_path, e5, ui=True, server={"rate_limit": "2/minute"})
    with live_server(app) as base:
        page = Hostile(base, tmp_path / "no-canary", "no-canary-token")
        config = page.config()
        dep = dependency(config, "kbchat-input", "submit")
        data = [benign_value(config, i) for i in dep["inputs"]]
        data[0] = "volcano"

        def answer() -> str:
            done = [m for m in page.call(dep["id"], data) if m.get("msg") == "process_completed"]
            assert done and done[0]["success"], done
            return json.dumps(done[0]["output"], ensure_ascii=False)

        assert "Vesuvius" in answer()
        assert httpx.post(f"{base}/api/chat", json={"message": "volcano"}).status_code == 200
        refused = answer()
        assert "Too many requests" in refused
        assert "Vesuvius" not in refused  # no answer, so no chain and no LLM call


# ------------------------------------------------------------------------------- admin keys
def test_admin_key_failures_are_throttled(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    app = make_app(kb_dir, tmp_path, e5, admin_api_key=ADMIN, server={"admin_failures": "3/minute"})
    with TestClient(app) as client:
        wrong = {"Authorization": "Bearer nope-nope"}
        codes = [client.post("/api/collections/default/sync", headers=wrong).status_code]
        codes += [client.post("/api/collections/default/sync", headers=wrong).status_code]
        codes += [client.post("/api/collections/default/sync", headers=wrong).status_code]
        assert codes == [403, 403, 403]
        locked = client.post("/api/collections/default/sync", headers=wrong)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        right = client.post(
            "/api/collections/default/sync", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert right.status_code == 429  # guessing stops for the window, right key or not
        other = TestClient(app, client=("198.51.100.9", 5000))
        ok = other.post(
            "/api/collections/default/sync", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert ok.status_code == 200  # another client is not locked out


def test_gradio_unlock_is_throttled_without_sleeping(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    import gradio as gr

    from app.server.access import Throttles
    from app.server.services import Services
    from app.server.ui import build_ui
    from app.settings import load_settings

    settings = load_settings(
        data_dir=kb_dir, admin_api_key=ADMIN, server={"admin_failures": "2/minute"}
    )
    services = Services(settings, embedder=e5, client=None, llm=None, conversations=None)  # type: ignore[arg-type]
    blocks = build_ui(services, Throttles(settings.server))
    unlock = next(f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "unlock")
    request = gr.Request(client={"host": "192.0.2.1"})
    for _ in range(2):
        assert unlock("wrong", request)[3] == "Wrong admin key."
    opened, _, _, message = unlock(ADMIN, request)  # the gate's state: None while locked
    assert opened is None and "Too many wrong keys" in message
    opened = unlock(ADMIN, gr.Request(client={"host": "192.0.2.2"}))[0]
    assert isinstance(opened, str) and opened  # unlocked: the key's digest


# ------------------------------------------------------------------------- proxies, hosts
def test_forwarded_for_is_honoured_only_from_trusted_proxies(
    kb_dir: Path, tmp_path: Path, e5: Any
) -> None:
    def spend(app: Any) -> list[int]:
        client = TestClient(app, client=("203.0.113.7", 4000))
        return [
            client.post(
                "/api/chat", json={"message": "volcano"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            ).status_code
            for i in range(3)
        ]

    direct = make_app(kb_dir, tmp_path, e5, server={"rate_limit": "2/minute"})
    assert spend(direct) == [200, 200, 429]  # a direct client cannot invent new addresses
    proxied = make_app(
        kb_dir,
        tmp_path,
        e5,
        server={"rate_limit": "2/minute", "trusted_proxies": ["203.0.113.0/24"]},
    )
    assert spend(proxied) == [200, 200, 200]  # each forwarded client has its own budget


def test_kbchat_serve_leaves_forwarded_headers_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from app import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr("app.server.app.create_app", lambda settings, **injected: object())
    cli.serve(host="127.0.0.1", port=8123)
    assert seen["proxy_headers"] is False


def test_host_allow_list(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    app = make_app(kb_dir, tmp_path, e5, server={"allowed_hosts": ["kb.example.com"]})
    with TestClient(app, base_url="http://kb.example.com") as client:
        assert client.get("/api/health").status_code == 200
        rebound = client.get("/api/health", headers={"Host": "attacker.test"})
        assert rebound.status_code == 400


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def api(kb_dir: Path, tmp_path: Path, e5: Any) -> Iterator[TestClient]:
    app = make_app(kb_dir, tmp_path, e5, admin_api_key=ADMIN, server={"rate_limit": "1000/minute"})
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/api/chat", b'{"message": "\\ud800"}'),
    ("POST", "/api/chat", b'{"message": "a\\u0000b"}'),
    ("POST", "/api/chat", {"message": 5}),
    ("POST", "/api/chat", {"message": "hi", "stream": "maybe"}),
    ("POST", "/api/chat", {"message": "hi", "session_id": "s" * 65}),
    ("POST", "/api/chat", {"message": "hi", "collection": "\ud800"}),
    ("POST", "/api/chat", b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("POST", "/api/chat", b"\xff\xfe not json"),
    ("POST", "/api/feedback", {"message_id": 108265209050993917952, "rating": "up"}),
    ("POST", "/api/feedback", {"message_id": -1, "rating": "up", "session_id": "abc"}),
    ("POST", "/api/feedback", {"message_id": 1, "rating": "meh", "session_id": "abc"}),
    ("GET", "/api/sessions/" + "s" * 5000, None),
    ("GET", "/api/sessions/%00", None),
    ("POST", "/api/collections/..%2Fetc/sync", None),
    ("POST", "/api/collections/a%00b/sync", None),
    ("POST", "/api/collections/" + "c" * 600 + "/sync", None),
    ("DELETE", "/api/collections/%00/documents/x", None),
    ("POST", "/v1/chat/completions", {"model": "default", "messages": "hi"}),
    ("POST", "/v1/chat/completions", {"model": "\x00", "messages": [{"role": "user"}]}),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "default", "messages": [{"role": "user", "content": "\ud800"}]},
    ),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "default", "messages": [{"role": "user", "content": "hi"}] * 500},
    ),
    (
        "POST",
        "/v1/chat/completions",
        {
            "model": "default",
            "messages": [{"role": "assistant", "content": "z" * 3000}] * 30
            + [{"role": "user", "content": "hi"}],
        },
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_malformed_input_is_a_4xx_with_a_message(
    api: TestClient, method: str, path: str, body: Any
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()  # ASCII JSON: lone surrogates travel as \ud800
    response = api.request(method, path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.text.strip()


# --------------------------------------------------------------------- sessions, feedback
def test_feedback_needs_the_session_that_holds_the_message(api: TestClient) -> None:
    mine = api.post("/api/chat", json={"message": "volcano"}).json()
    theirs = api.post("/api/chat", json={"message": "volcano"}).json()
    vote = {"message_id": theirs["message_id"], "rating": "down"}
    assert api.post("/api/feedback", json=vote).status_code == 422  # session id required
    stolen = api.post("/api/feedback", json={**vote, "session_id": mine["session_id"]})
    assert stolen.status_code == 404
    own = api.post("/api/feedback", json={**vote, "session_id": theirs["session_id"]})
    assert own.status_code == 200
    shown = api.get(f"/api/sessions/{theirs['session_id']}").json()
    assert shown["messages"][-1]["feedback"] == "down"
    assert api.get(f"/api/sessions/{mine['session_id']}").json()["messages"][-1]["feedback"] is None


def test_gradio_feedback_needs_the_session_too(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    """The Chatbot's like names an answer by its place in the page's own (server-side) list of
    message ids, and is stored only with the session that answer belongs to."""
    import gradio as gr

    from app.server.ui import build_ui

    services = make_app(kb_dir, tmp_path, e5).state.services
    blocks = build_ui(services)
    on_like = next(f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "on_like")
    mine, theirs = services.ask("volcano"), services.ask("volcano")
    liked = gr.LikeData(None, {"index": 1, "value": "", "liked": True})
    assert "not saved" in on_like(mine.session_id, {1: theirs.message_id}, liked)
    assert "cannot be rated" in on_like(theirs.session_id, {3: theirs.message_id}, liked)
    assert "Thanks" in on_like(theirs.session_id, {1: theirs.message_id}, liked)
    assert services.conversations.feedback_for(theirs.message_id) == [
        {"rating": "up", "comment": ""}
    ]


def test_ready_names_no_store_detail(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    """An anonymous /api/ready says the store is unreachable, not where it is or why."""

    class BrokenStore:
        def heartbeat(self) -> int:
            raise ConnectionError("could not reach chroma at secret-host.internal:8123")

    app = make_app(kb_dir, tmp_path, e5)
    app.state.services.client = BrokenStore()
    with TestClient(app) as client:
        answer = client.get("/api/ready")
    assert answer.status_code == 503
    assert answer.json()["store_error"] == "unreachable"
    assert "secret-host" not in answer.text


def test_start_up_recovery_survives_an_unreachable_store(
    kb_dir: Path, tmp_path: Path, e5: Any
) -> None:
    class DownStore:
        def list_collections(self) -> list[Any]:
            raise ConnectionError("could not reach chroma")

    services = make_app(kb_dir, tmp_path, e5).state.services
    services.client = DownStore()
    assert services.recover() == {}
