"""The app factory: one FastAPI app with the HTTP API, the OpenAI-compatible API, the widget and
the Gradio UI, all sharing one `Services` (one model, one store, one chain per collection)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.observability.http_observer import HttpObserver
from app.observability.metrics import Metrics
from app.observability.metrics_route import metrics_router
from app.observability.request_id import HEADER as REQUEST_ID
from app.observability.request_id import add_request_ids
from app.server import problems
from app.server.access import Throttles, allowed_origins, widget_keys
from app.server.assistant_access import AssistantCORS
from app.server.assistants import Assistants
from app.server.chat_gate import ChatGate
from app.server.conversation_admin import ConversationAdmin
from app.server.db import ConversationStore
from app.server.handoff import Handoffs
from app.server.handoff_chat import LazyPhrases
from app.server.handoff_notify import HandoffNotifier, Mailer
from app.server.insights import build_insights
from app.server.lead_webhook import LeadWebhooks
from app.server.leads import Leads
from app.server.middleware import BodyLimit, TrustedHosts, UploadGate
from app.server.rate_store import BudgetStore
from app.server.retention import RetentionTask
from app.server.routes_admin import admin_router
from app.server.routes_assistants import assistants_router, widget_config_router
from app.server.routes_chat import chat_router
from app.server.routes_conversations import conversations_router
from app.server.routes_fullpage import fullpage_router
from app.server.routes_handoff import handoff_router
from app.server.routes_insights import insights_router
from app.server.routes_leads import leads_router
from app.server.routes_openai import openai_router
from app.server.services import Services
from app.server.widget_bundle import build_widget_bundle

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from langchain_core.language_models import BaseChatModel

    from app.embeddings.e5 import E5Embeddings
    from app.server.ui_deferred import DeferredUI
    from app.settings import Settings

STATIC = Path(__file__).parent / "static"
READY_TIMEOUT_S = 2.0  # a store that takes longer to answer a heartbeat is not ready
WARM_UP_JOIN_S = 10.0  # how long shutdown waits for the start-up warm-up to finish
log = logging.getLogger(__name__)
SPARE_THREADS = 40  # worker threads beyond the chat slots: anyio's own default pool size
_FROM_SETTINGS: Any = object()


def create_app(
    settings: Settings,
    *,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
    llm: BaseChatModel | None = _FROM_SETTINGS,
    conversations: ConversationStore | None = None,
    with_ui: bool = True,
    defer_ui: bool = False,
) -> FastAPI:
    """`defer_ui`: build the UI after the server listens (app.server.ui_deferred), so readiness
    does not wait for Gradio; `kbchat serve` does, tests mostly build it at once."""
    from app.server.access import make_limiter
    from app.store import make_client

    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    if llm is _FROM_SETTINGS:
        from app.chat.llm import build_chat_model

        llm = build_chat_model(settings)
    metrics = Metrics()
    if hasattr(embedder, "batch_concurrent_queries"):
        embedder.batch_concurrent_queries(
            on_batch=metrics.query_batch.observe, on_cached=metrics.query_cached.inc
        )
    own_client = client is None  # what the app opens itself, it closes at shutdown
    own_conversations = conversations is None
    services = Services(
        settings,
        embedder=embedder,
        client=client or make_client(settings),
        llm=llm,
        conversations=conversations
        or ConversationStore(settings.db_url, redact=settings.redact_contacts),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # each running API chat holds a worker thread (the chain is blocking code): with every
        # chat slot taken by a slow LLM, the rest of the server still has its own threads
        threads = anyio.to_thread.current_default_thread_limiter()
        threads.total_tokens = max(
            threads.total_tokens, settings.server.max_concurrent_chats + SPARE_THREADS
        )
        preload = getattr(services.embedder, "preload", None)
        if preload is not None:
            preload()  # load the model once, in the background; /api/ready says when
        # the first chat's one-off embeddings, off the request path (app.chat.warmup)
        stop_warm = threading.Event()
        warm = threading.Thread(
            target=services.warm_up, args=(stop_warm,), name="kbchat-warm-up", daemon=True
        )
        warm.start()
        if settings.ingest.resync_on_start:  # finish syncs and uploads a kill interrupted
            threading.Thread(target=services.recover, name="kbchat-recover", daemon=True).start()
        retention.start()  # KBCHAT_RETENTION_DAYS: erase expired conversations, then hourly
        if deferred is not None:
            await deferred.start(after=warm.join)  # the first chat's needs before the UI
        yield
        stop_warm.set()  # first: the UI's build waits for the warm-up
        if deferred is not None:
            await deferred.stop()
        # before the store closes under it (a warm-up still embedding is given a few seconds)
        await anyio.to_thread.run_sync(warm.join, WARM_UP_JOIN_S)
        retention.stop()
        webhooks.close()
        notifier.close()
        close = getattr(services.client, "close", None)  # chromadb's Client, not ClientAPI
        if own_client and close is not None:
            close()  # Chroma's SQLite connections and threads
        if own_conversations:
            services.conversations.engine.dispose()

    app = FastAPIOffline(  # /docs and /redoc with their assets served here: no CDN
        title="kbchat",
        summary="Multilingual knowledge-base chat: HTTP API, OpenAI-compatible API, widget.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = metrics
    app.state.chat_gate = ChatGate(
        settings.server.max_concurrent_chats, settings.server.max_queued_chats
    )
    budgets = BudgetStore.from_settings(settings, metrics.registry)  # memory, or Redis
    limiter = make_limiter(budgets)
    app.state.limiter = limiter
    throttles = Throttles(settings.server, budgets)
    app.state.throttles = throttles
    problems.install(app)  # one error shape on /api (RFC 9457)
    app.state.assistants = assistants = Assistants(services.conversations.engine, settings)
    webhooks = LeadWebhooks(
        settings.webhook_allow_private, lambda outcome: metrics.lead_webhooks.labels(outcome).inc()
    )
    app.state.leads = Leads(services.conversations.engine, webhooks)
    app.state.conversation_admin = ConversationAdmin(services.conversations.engine, settings)
    retention = RetentionTask(services.conversations.engine, settings.retention_days)
    app.state.retention = retention
    notifier = HandoffNotifier(webhooks, Mailer(settings.smtp))
    app.state.handoffs = Handoffs(services.conversations.engine, settings, notifier)
    app.state.handoff_phrases = LazyPhrases(services)  # built on first use: needs the model
    app.state.insights = build_insights(
        settings, services.conversations.engine, services.embedder, services.client
    )
    app.add_middleware(
        AssistantCORS,  # CORSMiddleware, plus the origins of assistants' keys
        assistants=assistants,
        allow_origins=allowed_origins(settings),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "X-Kbchat-Key", "Authorization"],
        expose_headers=["Retry-After", REQUEST_ID],
        max_age=600,
    )
    app.add_middleware(
        BodyLimit,
        json_limit=settings.server.max_body_kb * 1024,
        upload_limit=int(settings.server.max_upload_mb * 2**20),
    )
    app.add_middleware(UploadGate, throttles=throttles)
    app.add_middleware(TrustedHosts, allowed_hosts=settings.server.allowed_hosts)
    # each add wraps the ones before: the request id is outermost, then the forwarded client,
    # so the access log and the metrics see both, and every refusal below them
    app.add_middleware(HttpObserver, metrics=metrics, access=settings.log.access)
    if settings.server.trusted_proxies:  # X-Forwarded-For from these peers only
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.server.trusted_proxies)
    add_request_ids(app)
    rate = settings.server.rate_limit
    app.include_router(chat_router(limiter, rate))
    app.include_router(admin_router())
    app.include_router(assistants_router())
    app.include_router(widget_config_router(limiter, rate))
    app.include_router(fullpage_router(limiter, rate))  # /a/{assistant}
    app.include_router(leads_router(limiter, rate))
    app.include_router(conversations_router())
    app.include_router(handoff_router(limiter, rate, throttles, settings.server.updates_rate_limit))
    app.include_router(insights_router())
    app.include_router(openai_router())
    if settings.metrics != "off":
        app.include_router(metrics_router(settings.metrics))
    _add_basic_routes(app, settings)
    deferred: DeferredUI | None = None
    app.state.deferred_ui = None
    if with_ui and defer_ui:
        from app.server.ui_deferred import DeferredUI

        deferred = app.state.deferred_ui = DeferredUI(lambda: _ui_app(app, services, throttles))
        app.mount("/", deferred)
    elif with_ui:
        from app.server.ui import mount_ui

        app = mount_ui(app, services, throttles, assistants, _console_parts(app))
    return app


def _console_parts(app: FastAPI) -> Any:
    from app.server.ui_console import ConsoleParts

    return ConsoleParts(
        conversations=app.state.conversation_admin,
        insights=app.state.insights,
        handoffs=app.state.handoffs,
    )


def _ui_app(app: FastAPI, services: Services, throttles: Throttles) -> Any:
    """The UI for DeferredUI to build (imports Gradio: in its worker thread, not at start)."""
    from app.server.ui import ui_app

    return ui_app(services, throttles, app.state.assistants, _console_parts(app))


def _add_basic_routes(app: FastAPI, settings: Settings) -> None:
    # Its own worker thread, so a full thread pool (chats on a slow LLM) cannot delay readiness.
    ready_threads = anyio.CapacityLimiter(1)

    @app.get("/api/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (on the event loop: no worker thread needed)."""
        return {"status": "ok"}

    @app.get(
        "/api/ready",
        tags=["health"],
        responses=problems.responses(503),
    )
    async def ready(request: Request) -> Response:
        """Readiness: the model is loaded and the store answers within READY_TIMEOUT_S; when
        not, a 503 problem carrying the same checks (`model`, `store`, `ready`). With
        KBCHAT_REDIS_URL, `redis` says whether it answers (it does not change `ready`)."""
        services = request.app.state.services
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                checks = await anyio.to_thread.run_sync(
                    _checks,
                    services,
                    request.app.state.throttles,
                    request.app.state.deferred_ui,
                    limiter=ready_threads,
                    abandon_on_cancel=True,
                )
        except TimeoutError:
            model = bool(getattr(services.embedder, "loaded", True))
            checks = {"model": model, "store": False, "store_error": "timeout", "ready": False}
        if checks["ready"]:
            return JSONResponse(checks)
        return problems.problem_response(
            503, "not ready: " + _not_ready(checks), instance=request.url.path, **checks
        )

    bundle = build_widget_bundle(STATIC)  # widget.js with its vendored markdown libraries

    @app.get("/widget.js", include_in_schema=False)
    def widget_js(request: Request) -> Response:
        headers = {"ETag": bundle.etag, "Cache-Control": "public, max-age=300"}
        if request.headers.get("if-none-match") == bundle.etag:
            return Response(status_code=304, headers=headers)
        # text/javascript (RFC 9239) gets "; charset=utf-8": a host page without <meta charset>
        # otherwise decodes the widget's strings as Latin-1
        return Response(bundle.text, media_type="text/javascript", headers=headers)

    @app.get("/widget/demo", include_in_schema=False)
    def widget_demo() -> HTMLResponse:
        page = (STATIC / "demo.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{WIDGET_KEY}}", widget_keys(settings)[0].key))


def _checks(
    services: Services, throttles: Throttles, deferred: DeferredUI | None = None
) -> dict[str, Any]:
    """The services' checks, and `redis` when one is configured. Redis down leaves the replica
    ready: the rate limits then count in memory (app.server.rate_store), so a load balancer
    keeps sending traffic; `redis: false` is for the operator (and kbchat_rate_limit_shared)."""
    checks: dict[str, Any] = services.ready()
    if deferred is not None:  # the UI built after the start: reported, not required
        checks["ui"] = deferred.state == "ready"
    redis = throttles.store.ping()
    if redis is not None:
        checks["redis"] = redis
        if not redis:
            checks["redis_error"] = "unreachable"
    return checks


def _not_ready(checks: dict[str, Any]) -> str:
    reasons = {"model": "the model is loading", "store": "the store is unreachable"}
    missing = [why for key, why in reasons.items() if not checks[key]]
    return "; ".join(missing) or "checks failed"
