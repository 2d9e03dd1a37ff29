"""The human-handoff contract the widget is built against (the "Contract for the widget" of the
handoff work item), as a small loopback FastAPI app that a test steers: the widget's config, chat
(answers, `offer_handoff`, the `handoff` SSE event), POST /api/handoff, POST /api/handoff/email,
GET /api/sessions/{id}/updates and the conversation history. It also serves /widget.js (the real
bundle) and a host page, so the widget runs same-origin as on a customer's site.

It records every request, so a test can tell whether the widget polled, and what it sent. The
end-to-end test against the real server is the lead's, at merge; this stub keeps the widget's own
tests fast (no model, no store, no LLM)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from tests.live_server import live_server

KEY = "pk-handoff-test"
SESSION = "sess-handoff-1"
STATIC = Path(__file__).resolve().parent.parent / "app" / "server" / "static"
EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")


def default_config() -> dict[str, Any]:
    return {
        "assistant": "shop",
        "name": "Railway shop",
        "avatar": None,
        "color": "#0f766e",
        "position": "right",
        "theme": "auto",
        "greeting": {},
        "suggestions": {},
        "default_language": "en",
        "lead": {"mode": "off", "after_messages": 3, "consent": {}},
        "handoff": {"enabled": True},
    }


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class StubState:
    """What the stub answers; a test sets these between its steps."""

    waiting: ClassVar[str] = "A person will answer here shortly."

    config: dict[str, Any] = field(default_factory=default_config)
    answer: str = "The monorail opened in **1901**."
    offer_handoff: bool = False  # `done` carries offer_handoff: true
    phrase: str = ""  # a question containing this starts a handoff (the phrase detection)
    phrase_reply: str = "A person will answer here shortly."
    handoff_reply: dict[str, Any] = field(
        default_factory=lambda: {"state": "waiting", "message": StubState.waiting}
    )
    state: str | None = None  # the handoff: None, "waiting", "active" or "closed"
    messages: list[dict[str, Any]] = field(default_factory=list)  # every stored message
    updates_status: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # forced answers
    updates_body: list[Any] = field(default_factory=list)  # bodies to answer polls with, verbatim
    emails: list[str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


class HandoffStub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.s = StubState()
        self.bundle = build_bundle()

    def reset(self, **changes: Any) -> StubState:
        with self.lock:
            self.s = StubState(**changes)
            return self.s

    def requests(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.s.requests if r.path == path]

    def polls(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.s.requests if r.path.endswith("/updates")]

    def operator_says(self, text: str, role: str = "operator") -> None:
        with self.lock:
            self._store(role, text)
            if role == "operator":
                self.s.state = "active"

    def set_state(self, state: str | None) -> None:
        with self.lock:
            self.s.state = state

    def _store(self, role: str, content: str) -> int:
        number = len(self.s.messages) + 1
        self.s.messages.append(
            {"id": number, "role": role, "content": content, "created": "2026-11-30T06:00:00Z"}
        )
        return number

    def app(self) -> FastAPI:
        app = FastAPI()
        stub = self

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            body: Any = None
            if request.method == "POST":
                raw = await request.body()
                body = json.loads(raw) if raw else None
            # every API call names the widget's key (or the full page's assistant, as the real
            # server requires)
            caller = request.headers.get("x-kbchat-key") or (
                "page:" + request.headers.get("x-kbchat-assistant", "")
            )
            if request.url.path.startswith("/api/") and caller not in (KEY, "page:shop"):
                return JSONResponse({"detail": "bad key"}, status_code=401)
            response: Response = await call_next(request)
            if request.url.path.startswith("/api/"):  # recorded once answered
                with stub.lock:
                    stub.s.requests.append(
                        Recorded(request.method, request.url.path, dict(request.query_params), body)
                    )
            return response

        @app.get("/shop")
        def shop() -> HTMLResponse:
            return HTMLResponse(
                '<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title><body>'
                f'<h1>Shop</h1><script src="/widget.js" data-key="{KEY}"></script></body></html>'
            )

        @app.get("/a/shop")
        def full_page() -> HTMLResponse:  # as app/server/fullpage.py writes it, under its CSP
            from app.server.fullpage import HEADERS

            return HTMLResponse(
                '<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title>'
                '<script src="/widget.js" data-mode="page" data-assistant="shop" defer></script>'
                "<body></body></html>",
                headers=HEADERS,
            )

        @app.get("/widget.js")
        def widget_js() -> Response:
            return Response(stub.bundle, media_type="text/javascript")

        @app.get("/api/widget/config")
        def config() -> dict[str, Any]:
            with stub.lock:
                return stub.s.config

        @app.post("/api/chat")
        def chat(body: dict[str, Any]) -> Response:
            with stub.lock:
                s = stub.s
                session = body.get("session_id") or SESSION
                stub._store("user", str(body.get("message", "")))
                events: list[tuple[str, dict[str, Any]]] = []
                done: dict[str, Any] = {"session_id": session, "message_id": None, "language": "en"}
                if s.state in ("waiting", "active"):  # a person is in the conversation
                    events.append(("handoff", {"state": s.state, "session_id": session}))
                elif s.phrase and s.phrase in str(body.get("message", "")):
                    s.state = "waiting"
                    events.append(("handoff", {"state": "waiting", "session_id": session}))
                    events.append(("token", {"text": s.phrase_reply}))
                    done["message_id"] = stub._store("assistant", s.phrase_reply)
                else:
                    events.append(("token", {"text": s.answer}))
                    events.append(("sources", {"sources": [], "cited": []}))
                    done["message_id"] = stub._store("assistant", s.answer)
                    if s.offer_handoff:
                        done["offer_handoff"] = True
                events.append(("done", done))
            text = "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events)
            return StreamingResponse(iter([text]), media_type="text/event-stream")

        @app.post("/api/handoff")
        def handoff(body: dict[str, Any]) -> JSONResponse:
            with stub.lock:
                s = stub.s
                if not s.config.get("handoff", {}).get("enabled"):
                    return problem(403, "handoff is not enabled", code="handoff_disabled")
                if body.get("session_id") != SESSION:
                    return problem(404, "no such session")
                if s.state not in ("waiting", "active"):
                    s.state = "waiting"
                return JSONResponse(s.handoff_reply)

        @app.post("/api/handoff/email")
        def handoff_email(body: dict[str, Any]) -> JSONResponse:
            with stub.lock:
                email = str(body.get("email", ""))
                if not EMAIL.match(email) or len(email) > 254:
                    return JSONResponse(
                        {"errors": [{"loc": ["body", "email"], "msg": "bad email"}]},
                        status_code=422,
                    )
                if body.get("session_id") != SESSION or stub.s.state not in ("waiting", "active"):
                    return problem(404, "no open handoff")
                stub.s.emails.append(email)
                return JSONResponse({"ok": True})

        @app.get("/api/sessions/{session_id}/updates")
        def updates(session_id: str, after: int = 0) -> Response:
            with stub.lock:
                s = stub.s
                if s.updates_status:
                    status, headers = s.updates_status.pop(0)
                    return problem(status, "refused", headers=headers)
                if s.updates_body:
                    return JSONResponse(s.updates_body.pop(0))
                if session_id != SESSION:
                    return problem(404, "no such session")
                new = [m for m in s.messages if m["id"] > after and m["role"] != "user"]
                state = {"state": s.state} if s.state else None
                return JSONResponse(
                    {"messages": new, "handoff": state}, headers={"Cache-Control": "no-store"}
                )

        @app.get("/api/sessions/{session_id}")
        def history(session_id: str) -> Response:
            with stub.lock:
                if session_id != SESSION:
                    return problem(404, "no such session")
                shown = [dict(m, sources=[], feedback=None) for m in stub.s.messages]
                return JSONResponse({"id": session_id, "messages": shown})

        return app


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": "", "status": status, "detail": detail, **extra}
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def build_bundle() -> str:
    from app.server.widget_bundle import build_widget_bundle

    return build_widget_bundle(STATIC).text


@contextmanager
def serve_stub() -> Iterator[tuple[str, HandoffStub]]:
    stub = HandoffStub()
    with live_server(stub.app()) as url:
        yield url, stub
