"""The app factory: one FastAPI app with the HTTP API, the OpenAI-compatible API, the widget and
the Gradio UI, all sharing one `Services` (one model, one store, one chain per collection)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from slowapi.errors import RateLimitExceeded
from starlette.types import ASGIApp, Receive, Scope, Send

from app.server.access import allowed_origins, widget_keys
from app.server.db import ConversationStore
from app.server.routes_admin import admin_router
from app.server.routes_chat import chat_router
from app.server.routes_openai import openai_router
from app.server.services import Services

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from langchain_core.language_models import BaseChatModel

    from app.embeddings.e5 import E5Embeddings
    from app.settings import Settings

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)
_FROM_SETTINGS: Any = object()


class BodyLimit:
    """Refuse bodies over the limit with 413 before reading them (uploads get their own limit)."""

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in {"POST", "PUT", "PATCH"}:
            upload = scope["path"].startswith("/api/collections/")
            limit = self.upload_limit if upload else self.json_limit
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                response = JSONResponse(
                    {"detail": f"request body is larger than {limit // 1024} KiB"}, 413
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
    llm: BaseChatModel | None = _FROM_SETTINGS,
    conversations: ConversationStore | None = None,
    with_ui: bool = True,
) -> FastAPI:
    from app.server.access import make_limiter
    from app.store import make_client

    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    if llm is _FROM_SETTINGS:
        from app.chat.llm import build_chat_model

        llm = build_chat_model(settings)
    if hasattr(embedder, "batch_concurrent_queries"):
        embedder.batch_concurrent_queries()
    services = Services(
        settings,
        embedder=embedder,
        client=client or make_client(settings),
        llm=llm,
        conversations=conversations or ConversationStore(settings.db_url),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        preload = getattr(services.embedder, "preload", None)
        if preload is not None:
            preload()  # load the model once, in the background; /api/ready says when
        if settings.ingest.resync_on_start:  # finish syncs and uploads a kill interrupted
            threading.Thread(target=services.recover, name="kbchat-recover", daemon=True).start()
        yield

    app = FastAPI(
        title="kbchat",
        summary="Multilingual knowledge-base chat: HTTP API, OpenAI-compatible API, widget.",
        lifespan=lifespan,
    )
    app.state.services = services
    limiter = make_limiter()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limited)  # type: ignore[arg-type]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed_origins(settings),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "X-Kbchat-Key", "Authorization"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    app.add_middleware(
        BodyLimit,
        json_limit=settings.server.max_body_kb * 1024,
        upload_limit=int(settings.server.max_upload_mb * 2**20),
    )
    rate = settings.server.rate_limit
    app.include_router(chat_router(limiter, rate))
    app.include_router(admin_router())
    app.include_router(openai_router(limiter, rate))
    _add_basic_routes(app, settings)
    if with_ui:
        import gradio as gr

        from app.server.ui import build_ui

        app = gr.mount_gradio_app(
            app,
            build_ui(services),
            path="/",
            max_file_size=int(settings.server.max_upload_mb * 2**20),
        )
    return app


def _add_basic_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/api/ready", tags=["health"])
    def ready(request: Request) -> JSONResponse:
        """Readiness: the model is loaded and the store answers."""
        checks = request.app.state.services.ready()
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    @app.get("/widget.js", include_in_schema=False)
    def widget_js() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="application/javascript")

    @app.get("/widget/demo", include_in_schema=False)
    def widget_demo() -> HTMLResponse:
        page = (STATIC / "demo.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{WIDGET_KEY}}", widget_keys(settings)[0].key))


def _rate_limited(request: Request, exc: RateLimitExceeded) -> Response:
    """429 with Retry-After: the limit's window, when the oldest counted request expires."""
    window = exc.limit.limit.get_expiry() if exc.limit is not None else 60
    return JSONResponse(
        {"detail": f"rate limit exceeded ({exc.detail}); try again in {window} s"},
        status_code=429,
        headers={"Retry-After": str(window)},
    )
