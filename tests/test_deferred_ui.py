"""The UI built after the server listens (`kbchat serve`): a request for it before it is built
waits and is answered by it, never a 404; a UI that fails to build leaves the API serving and
answers 503 without the reason; the real UI built this way keeps its file checks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from app.server.ui_deferred import DeferredUI
from tests.fakes import FakeEmbedder


def _app_with(ui: DeferredUI, after: Any = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ui.start(after)
        yield
        await ui.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/", ui)
    return app


def test_a_request_before_the_ui_is_built_waits_for_it() -> None:
    release = threading.Event()
    events: list[str] = []

    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(f"ui page {scope['path']}")(scope, receive, send)

    @asynccontextmanager
    async def ui_lifespan() -> AsyncIterator[None]:
        events.append("ui started")
        yield
        events.append("ui stopped")

    def build() -> Any:
        assert release.wait(30)
        return page, ui_lifespan

    ui = DeferredUI(build)
    with TestClient(_app_with(ui)) as client:
        assert client.get("/api/health").status_code == 200  # the API does not wait
        assert ui.state == "building"
        answers: list[Any] = []
        waiting = threading.Thread(target=lambda: answers.append(client.get("/some/page")))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not answers  # held, not a 404
        release.set()
        waiting.join(30)
        assert answers[0].status_code == 200
        assert answers[0].text == "ui page /some/page"
        assert ui.state == "ready" and events == ["ui started"]
    assert events == ["ui started", "ui stopped"]  # the UI's lifespan ends with the app's


def test_the_build_waits_for_what_it_is_told_to_come_after() -> None:
    """The server's warm-up (what a first chat needs) runs before the UI's CPU-heavy build."""
    warmed = threading.Event()
    built: list[bool] = []

    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ui")(scope, receive, send)

    @asynccontextmanager
    async def nothing() -> AsyncIterator[None]:
        yield

    def build() -> Any:
        built.append(warmed.is_set())
        return page, nothing

    ui = DeferredUI(build)
    with TestClient(_app_with(ui, after=lambda: warmed.wait(30))) as client:
        time.sleep(0.3)
        assert ui.state == "waiting" and built == []
        warmed.set()
        assert client.get("/").text == "ui"
        assert built == [True]


def test_a_shutdown_before_the_build_began_does_not_wait_for_it() -> None:
    never = threading.Event()
    built: list[bool] = []
    ui = DeferredUI(lambda: built.append(True))  # type: ignore[arg-type,func-returns-value]
    started = time.monotonic()
    with TestClient(_app_with(ui, after=lambda: never.wait(30))):
        pass
    assert time.monotonic() - started < 10 and built == []
    never.set()


def test_a_ui_that_fails_to_build_answers_503_and_the_api_keeps_serving() -> None:
    def build() -> Any:
        raise RuntimeError("secret path /etc/kbchat broke")

    ui = DeferredUI(build)
    with TestClient(_app_with(ui)) as client:
        answer = client.get("/")
        assert answer.status_code == 503
        assert "secret" not in answer.text and "/etc" not in answer.text
        assert ui.state == "failed"
        assert client.get("/api/health").status_code == 200


def test_a_ui_that_never_started_answers_503_not_404() -> None:
    """Without the lifespan (an ASGI server that skips it) the UI is never built: say so."""
    ui = DeferredUI(lambda: (_ for _ in ()).throw(AssertionError("not called")))
    client = TestClient(_app_with(ui))  # no `with`: no lifespan
    assert client.get("/").status_code == 503


def test_the_real_ui_built_later_serves_its_page_and_keeps_its_checks(tmp_path: Path) -> None:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", ingest={"resync_on_start": False})
    app = create_app(settings, embedder=FakeEmbedder(), llm=None, defer_ui=True)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "gradio" in page.text.lower()
        assert client.get("/api/ready").json()["ui"] is True
        config = client.get("/config").json()
        # Gradio's queue was started by its lifespan: a chat turn runs to completion
        send = next(
            c["id"]
            for c in config["components"]
            if c.get("props", {}).get("elem_id") == "kbchat-send"
        )
        respond = next(d["id"] for d in config["dependencies"] if [send, "click"] in d["targets"])
        joined = client.post(
            "/gradio_api/queue/join",
            json={
                "data": ["hello?", None, None, "default", None, None],
                "fn_index": respond,
                "session_hash": "s" + "0" * 10,
            },
        )
        assert joined.status_code == 200
        messages = []
        with client.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": "s" + "0" * 10}
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    messages.append(json.loads(line[5:])["msg"])
                    if messages[-1] in {"process_completed", "unexpected_error"}:
                        break
        assert messages[-1] == "process_completed"
        # LocalFilesOnly still wraps the UI: no fetching of a URL a client names
        assert client.get("/gradio_api/file=http://127.0.0.1:1/x").status_code == 403
