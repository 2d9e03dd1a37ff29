"""One error shape on /api: every refusal, whoever makes it (a route, validation, the rate
limiter, the body-size and Host checks, an unexpected exception), is an RFC 9457 problem with
`application/problem+json`; /v1 keeps OpenAI's shape. Also: a re-sync never creates a
collection, and DELETE /api/collections/{name} (admin) with hostile names. Real model, real
Chroma, the real app through Starlette's TestClient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

ADMIN = "problem-admin-key-1"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
PROBLEM = "application/problem+json"


def make_app(tmp_path: Path, e5: Any, *, ingest: bool = True, **overrides: Any) -> Any:
    """The real app in extractive mode (no LLM), with a `default` collection ingested from a
    folder outside the data folder (the user's own documents)."""
    from app.ingest import ingest_folder
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
        **overrides,
    )
    if ingest:
        docs = tmp_path / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "volcano.md").write_text(
            "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy.",
            encoding="utf-8",
        )
        ingest_folder(settings, docs, "default", embedder=e5)
    return create_app(settings, embedder=e5, llm=None, with_ui=False)


def assert_problem(r: httpx.Response, status: int, path: str, *words: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem for `status` on `path` whose detail has `words`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert body["instance"] == path
    assert isinstance(body["detail"], str) and body["detail"]
    for word in words:
        assert word in body["detail"], body
    return body


def test_route_and_validation_errors_are_problems(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5)
    with TestClient(app) as c:
        assert_problem(c.get("/api/sessions/nosuchsession"), 404, "/api/sessions/nosuchsession")
        r = c.post("/api/chat", json={"message": "hi", "collection": "nope-kb"})
        assert_problem(r, 404, "/api/chat", "nope-kb")
        body = assert_problem(c.post("/api/chat", json={}), 422, "/api/chat", "message")
        assert body["errors"][0]["loc"] == ["body", "message"]
        assert "input" not in body["errors"][0]  # the input is never echoed
        r = c.post("/api/chat", content=b"{not json", headers={"Content-Type": "application/json"})
        assert_problem(r, 422, "/api/chat", "not valid JSON")
        r = c.post("/api/chat", json={"message": "hi"}, headers={"X-Kbchat-Key": "wrong"})
        assert_problem(r, 401, "/api/chat", "widget key")
        r = c.post("/api/chat", json={"message": "hi"}, headers={"Origin": "https://evil.test"})
        assert_problem(r, 403, "/api/chat")
        assert_problem(
            c.post("/api/collections/default/sync"), 401, "/api/collections/default/sync"
        )
        r = c.post("/api/collections/default/sync", headers={"Authorization": "Bearer wrong"})
        assert_problem(r, 403, "/api/collections/default/sync", "wrong admin key")
        assert_problem(c.get("/api/no-such-route"), 404, "/api/no-such-route")
        assert_problem(c.put("/api/chat", json={}), 405, "/api/chat")
        # /v1 keeps OpenAI's shape
        r = c.post("/v1/chat/completions", json={})
        assert r.status_code == 400 and "error" in r.json() and "detail" not in r.json()


def test_limits_in_front_of_the_app_are_problems(tmp_path: Path, e5: Any) -> None:
    app = make_app(
        tmp_path,
        e5,
        server={"max_body_kb": 1, "rate_limit": "2/minute", "allowed_hosts": ["testserver"]},
    )
    with TestClient(app) as c:
        big = {"message": "x" * 4096}
        assert_problem(c.post("/api/chat", json=big), 413, "/api/chat", "larger than")
        r = c.post("/v1/chat/completions", json=big)  # /v1: OpenAI's shape, as before
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = c.get("/api/health", headers={"Host": "evil.test"})
        assert_problem(r, 400, "/api/health", "Host")
        for _ in range(2):
            c.post("/api/chat", json={"message": "Where is Vesuvius?"})
        r = c.post("/api/chat", json={"message": "Where is Vesuvius?"})
        assert_problem(r, 429, "/api/chat", "rate limit")
        assert int(r.headers["Retry-After"]) > 0


def test_feedback_rate_limit_and_busy_chats_are_problems(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5, server={"rate_limit": "1/minute"})
    with TestClient(app) as c:
        feedback = {"session_id": "abc", "message_id": 1, "rating": "up"}
        assert_problem(c.post("/api/feedback", json=feedback), 404, "/api/feedback")
        r = c.post("/api/feedback", json=feedback)  # slowapi's own limit
        assert_problem(r, 429, "/api/feedback", "rate limit")
    app = make_app(tmp_path, e5, ingest=False, server={"max_concurrent_chats": 1})
    app.state.chat_gate.capacity = 0  # every slot and queue place taken
    with TestClient(app) as c:
        r = c.post("/api/chat", json={"message": "hi", "collection": "default"})
        assert_problem(r, 503, "/api/chat", "too many chats")
        assert r.headers["Retry-After"]


def test_unexpected_errors_are_problems_without_internals(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5)

    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("secret path /srv/kbchat/data and password hunter2")

    app.state.services.collections = broken
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/collections")
        assert_problem(r, 500, "/api/collections")
        assert "hunter2" not in r.text and "/srv" not in r.text

        class BrokenStore:
            def heartbeat(self) -> int:
                raise ConnectionError("chroma at secret-host.internal:8123")

        app.state.services.client = BrokenStore()
        body = assert_problem(c.get("/api/ready"), 503, "/api/ready", "store")
        assert body["ready"] is False and body["store_error"] == "unreachable"
        assert "secret-host" not in str(body)


def test_sync_of_an_unknown_collection_creates_nothing(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5)
    settings = app.state.services.settings
    with TestClient(app) as c:
        r = c.post("/api/collections/defualt/sync", headers=AUTH)
        assert_problem(r, 404, "/api/collections/defualt/sync", "defualt")
        names = [row["name"] for row in c.get("/api/collections").json()]
        assert names == ["default"]
        assert not (settings.collections_dir / "defualt").exists()
        assert c.post("/api/collections/default/sync", headers=AUTH).status_code == 200


def test_delete_collection(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5)
    services = app.state.services
    settings = services.settings
    with TestClient(app) as c:
        files = [("files", ("faq.md", b"# FAQ\n\nThe office opens at nine.", "text/markdown"))]
        r = c.post("/api/collections/uploads-kb/documents", files=files, headers=AUTH)
        assert r.status_code == 200, r.text
        folder = settings.collections_dir / "uploads-kb"
        manifest = settings.manifests_dir / "uploads-kb.sqlite"
        assert (folder / "faq.md").is_file() and manifest.is_file()
        assert c.post("/api/chat", json={"message": "when?", "collection": "uploads-kb"}).is_success

        assert_problem(c.delete("/api/collections/uploads-kb"), 401, "/api/collections/uploads-kb")
        r = c.delete("/api/collections/uploads-kb", headers={"Authorization": "Bearer nope"})
        assert_problem(r, 403, "/api/collections/uploads-kb")
        r = c.delete("/api/collections/uploads-kb", headers=AUTH)
        assert r.status_code == 204 and r.content == b""
        assert not folder.exists() and not manifest.exists()
        assert [row["name"] for row in c.get("/api/collections").json()] == ["default"]
        r = c.post("/api/chat", json={"message": "when?", "collection": "uploads-kb"})
        assert_problem(r, 404, "/api/chat")  # no stale chain answers from it
        r = c.delete("/api/collections/uploads-kb", headers=AUTH)
        assert_problem(r, 404, "/api/collections/uploads-kb")

        # a collection ingested from the user's own folder: the folder stays
        assert c.delete("/api/collections/default", headers=AUTH).status_code == 204
        assert (tmp_path / "docs" / "volcano.md").is_file()
        assert c.get("/api/collections").json() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/collections/..",
        "/api/collections/%2e%2e",
        "/api/collections/a",
        "/api/collections/-bad-",
        "/api/collections/" + "x" * 600,
        "/api/collections/bad%00name",
        "/api/collections/..%2F..%2Fdata",
        "/api/collections/a..b",
    ],
)
def test_delete_collection_refuses_hostile_names(tmp_path: Path, e5: Any, path: str) -> None:
    app = make_app(tmp_path, e5, ingest=False)
    data = tmp_path / "data"
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    with TestClient(app) as c:
        r = c.delete(path, headers=AUTH)
    assert 400 <= r.status_code < 500 and r.status_code not in {401, 403}, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    after = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert [p for p in after if p not in before and p.parts[0] != "locks"] == []


def test_openapi_declares_problems_security_and_sse(tmp_path: Path, e5: Any) -> None:
    app = make_app(tmp_path, e5, ingest=False)
    with TestClient(app) as c:
        schema = c.get("/openapi.json").json()
    assert {"type", "title", "status", "detail", "instance"} <= set(
        schema["components"]["schemas"]["Problem"]["properties"]
    )
    bearer = schema["components"]["securitySchemes"]["AdminKey"]
    assert bearer == {"type": "http", "scheme": "bearer", "description": "KBCHAT_ADMIN_API_KEY"}
    paths = schema["paths"]
    want = {
        ("/api/chat", "post"): {"401", "403", "404", "413", "422", "429", "503"},
        ("/api/collections/{name}/sync", "post"): {"401", "403", "404", "409", "422", "429"},
        ("/api/collections/{name}", "delete"): {"401", "403", "404", "409", "422", "429"},
        ("/api/collections/{name}/documents", "post"): {"401", "403", "413", "422", "429"},
        ("/api/ready", "get"): {"503"},
    }
    for (path, method), statuses in want.items():
        declared = paths[path][method]["responses"]
        assert statuses <= set(declared), (path, sorted(declared))
        for status in statuses:
            assert list(declared[status]["content"]) == [PROBLEM], (path, status)
    for path, method in [
        ("/api/collections/{name}", "delete"),
        ("/api/collections/{name}/sync", "post"),
    ]:
        assert paths[path][method]["security"] == [{"AdminKey": []}]
    assert "security" not in paths["/api/chat"]["post"]
    chat_ok = paths["/api/chat"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in chat_ok and "application/json" in chat_ok
    # /v1 keeps OpenAI's error body in its schema
    v1 = paths["/v1/chat/completions"]["post"]["responses"]["404"]["content"]
    assert v1["application/json"]["schema"]["$ref"].endswith("ErrorBody")


def test_admin_lockout_and_busy_collection_are_problems(tmp_path: Path, e5: Any) -> None:
    import threading

    app = make_app(tmp_path, e5, server={"admin_failures": "2/minute"})
    with TestClient(app) as c:
        busy = app.state.services._sync_locks.setdefault("default", threading.Lock())
        with busy:  # a sync of it is running in this process
            r = c.delete("/api/collections/default", headers=AUTH)
            assert_problem(r, 409, "/api/collections/default", "sync")
        assert [row["name"] for row in c.get("/api/collections").json()] == ["default"]
        wrong = {"Authorization": "Bearer wrong-key"}
        for _ in range(2):
            c.post("/api/collections/default/sync", headers=wrong)
        r = c.post("/api/collections/default/sync", headers=AUTH)  # refused before the body
        assert_problem(r, 429, "/api/collections/default/sync", "wrong admin keys")
        r = c.delete("/api/collections/default", headers=AUTH)  # refused by the route's check
        assert_problem(r, 429, "/api/collections/default", "wrong admin keys")
        assert r.headers["Retry-After"]
