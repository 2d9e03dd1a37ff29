"""Every HTTP route, with the real E5 model, a real Chroma and the loopback LLM server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.live_server import live_server
from tests.openai_stub import OpenAIStub, condensing

pytestmark = pytest.mark.integration

DOCS = {
    "monorail.md": "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a "
    "suspended monorail in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper.",
    "volcano.md": "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. Its "
    "eruption in the year 79 buried the Roman cities of Pompeii and Herculaneum under ash.",
}
ADMIN = "admin-secret-123"
SHOP = "http://shop.test"


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Path:
    from app.ingest import ingest_folder
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("server")
    folder = base / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingest_folder(load_settings(data_dir=base / "data"), folder, "default", embedder=e5)
    return base / "data"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=condensing("It opened in 1901 [1].")) as server:
        yield server


def make_app(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub | None = None, **overrides: Any
) -> Any:
    from app.server.app import create_app
    from app.settings import load_settings

    llm: dict[str, Any] = {}
    if stub is not None:
        llm = {
            "openai_base_url": stub.base_url,
            "llm": {"model": "stub-model", "max_retries": 0, "timeout": 5},
        }
    settings = load_settings(
        data_dir=kb_dir,
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        **llm,
        **overrides,
    )
    return create_app(settings, embedder=e5, with_ui=False)


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_chat_json_stream_sessions_and_feedback(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    with TestClient(make_app(kb_dir, tmp_path, e5, stub)) as client:
        r = client.post("/api/chat", json={"message": "¿Cuándo abrió el monorraíl de Wuppertal?"})
        assert r.status_code == 200
        body = r.json()
        assert body["answer"] == "It opened in 1901 [1]." and body["mode"] == "generative"
        assert body["sources"][0]["source"] == "monorail.md" and body["cited"] == [1]
        assert body["language"] == "es" and body["grounded"] is True
        session = body["session_id"]

        r = client.post(
            "/api/chat",
            json={"message": "and the volcano near Naples?", "session_id": session, "stream": True},
        )
        assert r.headers["content-type"].startswith("text/event-stream")
        got = events(r.text)
        names = [name for name, _ in got]
        assert names[-2:] == ["sources", "done"] and set(names[:-2]) == {"token"}
        assert len(names) > 4  # several tokens
        assert "".join(d["text"] for n, d in got if n == "token") == "It opened in 1901 [1]."
        assert got[-1][1]["session_id"] == session
        message_id = got[-1][1]["message_id"]
        assert got[-2][1]["sources"][0]["source"] == "volcano.md"
        # the follow-up was condensed with the stored history
        assert "¿Cuándo abrió el monorraíl de Wuppertal?" in stub.all_prompt_text(1)

        assert client.post(
            "/api/feedback",
            json={
                "session_id": session,
                "message_id": message_id,
                "rating": "down",
                "comment": "too short",
            },
        ).json()["ok"]
        unknown = {"session_id": session, "message_id": 99999, "rating": "up"}
        assert client.post("/api/feedback", json=unknown).status_code == 404
        meh = {"session_id": session, "message_id": message_id, "rating": "meh"}
        assert client.post("/api/feedback", json=meh).status_code == 422
        conversation = client.get(f"/api/sessions/{session}").json()
        roles = [m["role"] for m in conversation["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert conversation["messages"][-1]["feedback"] == "down"
        assert conversation["messages"][1]["sources"][0]["source"] == "monorail.md"
        assert client.get("/api/sessions/nope").status_code == 404

    # A restart (a new app on the same database) loses nothing and continues the conversation.
    stub.requests.clear()
    with TestClient(make_app(kb_dir, tmp_path, e5, stub)) as client:
        assert len(client.get(f"/api/sessions/{session}").json()["messages"]) == 4
        client.post("/api/chat", json={"message": "and when?", "session_id": session})
        assert "and the volcano near Naples?" in stub.all_prompt_text(0)  # condense saw history
        assert len(client.get(f"/api/sessions/{session}").json()["messages"]) == 6


def test_admin_routes_need_the_admin_key(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    with TestClient(make_app(kb_dir, tmp_path, e5)) as client:
        r = client.post("/api/collections/default/sync")
        assert r.status_code == 403 and "KBCHAT_ADMIN_API_KEY" in r.json()["detail"]
    with TestClient(make_app(kb_dir, tmp_path, e5, admin_api_key=ADMIN)) as client:
        assert client.post("/api/collections/default/sync").status_code == 401
        wrong = {"Authorization": "Bearer nope-nope"}
        assert client.post("/api/collections/default/sync", headers=wrong).status_code == 403
        ok = client.post("/api/collections/default/sync", headers={"X-Admin-Key": ADMIN})
        assert ok.status_code == 200 and ok.json()["unchanged"] == len(DOCS)
        listed = client.get("/api/collections").json()
        assert [c["name"] for c in listed] == ["default"] and "folder" not in listed[0]


def test_upload_traversal_and_delete(tmp_path: Path, e5: Any) -> None:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", admin_api_key=ADMIN)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings, embedder=e5, with_ui=False)) as client:
        files = [
            (
                "files",
                (
                    "cheese.md",
                    b"# Emmentaler\n\nEmmentaler ist ein Hartkaese aus "
                    b"dem Emmental in der Schweiz.",
                    "text/markdown",
                ),
            )
        ]
        r = client.post("/api/collections/uploads/documents", files=files, headers=auth)
        assert r.status_code == 200 and r.json()["report"]["added"] == ["cheese.md"]
        answer = client.post(
            "/api/chat", json={"message": "Where is Emmental cheese from?", "collection": "uploads"}
        ).json()
        assert answer["sources"][0]["source"] == "cheese.md"
        folder = settings.collections_dir / "uploads"
        for name in [
            "../evil.md",
            "..\\evil.md",
            "/etc/evil.md",
            ".hidden.md",
            "a/../../b.md",
            "sub/x.md",
        ]:
            bad = [("files", (name, b"x", "text/markdown"))]
            r = client.post("/api/collections/uploads/documents", files=bad, headers=auth)
            assert r.status_code in {400, 422}, name
        assert sorted(p.name for p in tmp_path.rglob("*.md")) == ["cheese.md"]
        assert client.delete(
            "/api/collections/uploads/documents/../x.md", headers=auth
        ).status_code in {400, 404}
        gone = client.delete("/api/collections/uploads/documents/cheese.md", headers=auth)
        assert gone.status_code == 200 and gone.json()["removed"] == ["cheese.md"]
        assert not (folder / "cheese.md").exists()
        assert (
            client.delete("/api/collections/uploads/documents/cheese.md", headers=auth).status_code
            == 404
        )


def test_widget_keys_cors_and_origins(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    keys = [{"key": "pk_shop_12345", "collection": "default", "origins": [SHOP]}]
    with TestClient(make_app(kb_dir, tmp_path, e5, widget_keys=keys)) as client:
        pre = client.options(
            "/api/chat",
            headers={
                "Origin": SHOP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-kbchat-key",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == SHOP
        evil = client.options(
            "/api/chat",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in evil.headers
        key = {"X-Kbchat-Key": "pk_shop_12345"}
        ok = client.post("/api/chat", json={"message": "volcano"}, headers={**key, "Origin": SHOP})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == SHOP
        assert (
            client.post(
                "/api/chat", json={"message": "x"}, headers={**key, "Origin": "http://evil.test"}
            ).status_code
            == 403
        )
        assert (
            client.post(
                "/api/chat", json={"message": "x"}, headers={"Origin": "http://evil.test"}
            ).status_code
            == 403
        )
        assert (
            client.post(
                "/api/chat", json={"message": "x"}, headers={"X-Kbchat-Key": "pk_unknown_999"}
            ).status_code
            == 401
        )
        other = client.post(
            "/api/chat",
            json={"message": "x", "collection": "elsewhere"},
            headers={**key, "Origin": SHOP},
        )
        assert other.status_code == 403


def test_rate_limit_and_size_limits(kb_dir: Path, tmp_path: Path, e5: Any) -> None:
    app = make_app(
        kb_dir,
        tmp_path,
        e5,
        server={"rate_limit": "3/minute", "max_message_chars": 50, "max_body_kb": 2},
    )
    with TestClient(app) as client:
        too_long = client.post("/api/chat", json={"message": "x" * 51})
        assert too_long.status_code == 422 and "50 characters" in too_long.text
        huge = client.post(
            "/api/chat",
            content=b'{"message": "' + b"y" * 4000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        codes = [
            client.post("/api/chat", json={"message": "volcano"}).status_code for _ in range(4)
        ]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        limited = client.post("/api/chat", json={"message": "volcano"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


def test_health_ready_and_openai_compatible_api(
    kb_dir: Path, tmp_path: Path, e5: Any, stub: OpenAIStub
) -> None:
    import openai

    app = make_app(kb_dir, tmp_path, e5, stub)
    with live_server(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="anything", max_retries=0)
        assert [m.id for m in client.models.list()] == ["default"]
        done = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "When did the Wuppertal monorail open?"}],
        )
        assert done.choices[0].message.content == "It opened in 1901 [1]."
        extra = done.model_extra or {}
        assert extra["sources"][0]["source"] == "monorail.md"
        stream = client.chat.completions.create(
            model="default",
            stream=True,
            messages=[{"role": "user", "content": "Which cities did Vesuvius bury?"}],
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "It opened in 1901 [1]."
        last = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
        assert (last.model_extra or {})["sources"][0]["source"] == "volcano.md"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
        import httpx

        assert httpx.get(f"{base}/api/health").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/api/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert "/api/chat" in httpx.get(f"{base}/openapi.json").json()["paths"]
        js = httpx.get(f"{base}/widget.js")
        assert js.status_code == 200
        # charset: a host page without <meta charset> must still read the strings right
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        demo = httpx.get(f"{base}/widget/demo").text
        assert 'src="/widget.js"' in demo and "{{WIDGET_KEY}}" not in demo
