"""Who may do what: the admin key, public widget keys bound to a collection and its sites,
same-origin pages, and the budgets every door shares: chat requests per client IP and per widget
key, Web UI uploads per client IP, wrong admin keys per client IP (the `limits` library).

The client IP is the peer address; behind a reverse proxy, the app factory installs uvicorn's
ProxyHeadersMiddleware for KBCHAT_SERVER_TRUSTED_PROXIES only, so a direct client cannot name
itself with X-Forwarded-For."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request
from limits import parse
from limits.strategies import MovingWindowRateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address

from app.server.rate_store import BudgetStore, redis_options
from app.settings import WidgetKey

if TYPE_CHECKING:
    from app.server.assistants import AssistantKey
    from app.settings import ServerSettings, Settings

KEY_HEADER = "x-kbchat-key"
PAGE_HEADER = "x-kbchat-assistant"  # sent by the full page /a/{id}: see page_caller
DEMO_KEY = "kbchat-demo-key"  # used only when no widget key is configured; same-origin only
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """What a request is allowed: a fixed collection for widget keys, anything for the rest;
    `assistant` when the widget key is an assistant's (its persona, model and caps apply)."""

    widget: WidgetKey | None = None
    admin: bool = False
    assistant: AssistantKey | None = None

    def collection(self, requested: str | None, default: str) -> str:
        if self.widget is None:
            return requested or default
        if requested and requested != self.widget.collection:
            raise HTTPException(403, "this widget key is bound to another collection")
        return self.widget.collection


def widget_keys(settings: Settings) -> list[WidgetKey]:
    if settings.widget_keys:
        return list(settings.widget_keys)
    return [WidgetKey(key=DEMO_KEY, collection=settings.collection, origins=[])]


def allowed_origins(settings: Settings) -> list[str]:
    """Origins that get CORS answers: exactly those named by some widget key."""
    return sorted({o.rstrip("/") for k in widget_keys(settings) for o in k.origins})


def same_origin(request: Request, origin: str) -> bool:
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc == request.headers.get("host", "")


def presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get(KEY_HEADER)
    if key:
        return key
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def presented_admin_key(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-admin-key") or presented_key(headers)


def is_admin(settings: Settings, key: str | None) -> bool:
    admin = settings.admin_api_key
    return bool(admin and key and secrets.compare_digest(key, admin.get_secret_value()))


class RateBudget:
    """So many hits per moving window per identifier, counted in the app's BudgetStore (process
    memory, or Redis shared by every replica); `name` keeps each budget's keys apart there."""

    def __init__(self, rate: str, name: str = "budget", store: BudgetStore | None = None) -> None:
        self.item = parse(rate)
        self.name = name
        self.store = store or BudgetStore()

    def hit(self, ident: str) -> int | None:
        """Spend one: None when allowed, else the seconds until the window frees one."""
        key = self._key(ident)
        return self.store.run(
            lambda limiter: None if limiter.hit(self.item, key) else self._wait(limiter, key)
        )

    def exhausted(self, ident: str) -> int | None:
        """Like `hit` without spending: None while some budget is left."""
        key = self._key(ident)
        return self.store.run(
            lambda limiter: None if limiter.test(self.item, key) else self._wait(limiter, key)
        )

    def _key(self, ident: str) -> str:
        return f"{self.name}:{ident}"

    def _wait(self, limiter: MovingWindowRateLimiter, key: str) -> int:
        reset = limiter.get_window_stats(self.item, key).reset_time
        return max(1, math.ceil(reset - time.time()))


class Throttles:
    """The budgets shared by every door: the API, the OpenAI-compatible API and the Web UI."""

    def __init__(self, server: ServerSettings, store: BudgetStore | None = None) -> None:
        self.store = store or BudgetStore()
        self.chat = RateBudget(server.rate_limit, "chat", self.store)
        self.upload = RateBudget(server.upload_rate_limit, "upload", self.store)
        self.admin_failures = RateBudget(server.admin_failures, "admin-failures", self.store)
        # Redis calls from async code run here, not on the event loop nor in the worker threads
        # that slow chats may fill
        self.threads = anyio.CapacityLimiter(8)

    def spend_chat(self, client: str, widget_key: str | None = None) -> int | None:
        """One chat turn: the client's budget, and the widget key's own budget if one is given.
        The key is hashed: a presented key (even the admin key) is never written to Redis."""
        wait = self.chat.hit(f"ip:{client}")
        if wait is None and widget_key:
            wait = self.chat.hit(f"key:{hashlib.sha256(widget_key.encode()).hexdigest()[:32]}")
        return wait

    def admin_locked(self, client: str) -> int | None:
        return self.admin_failures.exhausted(f"ip:{client}")

    def admin_failed(self, client: str) -> None:
        self.admin_failures.hit(f"ip:{client}")

    async def run(self, decide: Callable[[], T]) -> T:
        """A decision from async code: at once with memory, off the event loop with Redis."""
        if not self.store.shared:
            return decide()
        return await anyio.to_thread.run_sync(decide, limiter=self.threads)


def client_address(request: Request) -> str:
    """The peer address (already the forwarded client when the peer is a trusted proxy)."""
    return request.client.host if request.client else "unknown"


def too_many(wait: int, what: str = "rate limit exceeded") -> HTTPException:
    return HTTPException(429, f"{what}; try again in {wait} s", headers={"Retry-After": str(wait)})


async def spend_chat(request: Request) -> None:
    """Dependency for the chat doors: one budget per client IP (and per widget key). Async: it
    never waits on memory; with Redis it waits in threads of its own (see Throttles.run), never
    in those that slow chats may all be using."""
    throttles: Throttles = request.app.state.throttles
    client, key = client_address(request), request.headers.get(KEY_HEADER)
    if not key and (page := request.headers.get(PAGE_HEADER)):
        key = "page:" + page[:64]  # the full page's own budget, like a widget key's
    wait = await throttles.run(lambda: throttles.spend_chat(client, key))
    if wait is not None:
        raise too_many(wait)


def _admin_key_matches(request: Request, settings: Settings, key: str) -> bool:
    """Compare a presented key with the admin key, unless this client guessed too often: every
    wrong key counts, so the admin key cannot be guessed through any route."""
    throttles: Throttles = request.app.state.throttles
    client = client_address(request)
    if settings.admin_api_key is None or throttles.admin_locked(client) is not None:
        return False
    if is_admin(settings, key):
        return True
    throttles.admin_failed(client)
    return False


def chat_caller(request: Request) -> Caller:
    """Dependency for chat routes: checks the widget key and the Origin of browser calls."""
    settings: Settings = request.app.state.services.settings
    key = presented_key(request.headers)
    origin = request.headers.get("origin")
    widget = next(
        (w for w in widget_keys(settings) if key and secrets.compare_digest(w.key, key)), None
    )
    assistant = None
    if key and widget is None and (assistants := getattr(request.app.state, "assistants", None)):
        assistant = assistants.by_key(key)
        if assistant is not None:
            collection = assistant.settings.collection or settings.collection
            widget = WidgetKey(key=key, collection=collection, origins=assistant.origins)
    if not key and (page := request.headers.get(PAGE_HEADER)) is not None:
        return page_caller(request, settings, page)
    if key and widget is None and _admin_key_matches(request, settings, key):
        return Caller(admin=True)
    if key and widget is None and request.headers.get(KEY_HEADER):
        raise HTTPException(401, "unknown widget key")
    if widget is not None:
        allowed = {o.rstrip("/") for o in widget.origins}
        if (
            origin
            and origin.rstrip("/") not in allowed
            and not (not widget.origins and same_origin(request, origin))
        ):
            raise HTTPException(403, f"origin {origin} is not allowed for this widget key")
        return Caller(widget=widget, assistant=assistant)
    if origin and not same_origin(request, origin):
        raise HTTPException(403, "requests from other sites need a widget key for that site")
    return Caller()


def from_this_site(request: Request) -> bool:
    """False for a browser request that another site made: an Origin that is not this server,
    or Sec-Fetch-Site other than same-origin (browsers send it even on GETs without Origin).
    A client that is no browser can claim anything: it gets no more than a page would."""
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(request, origin):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"


def page_caller(request: Request, settings: Settings, assistant: str) -> Caller:
    """The full page /a/{id} has no key to show: its same-origin requests name the assistant in
    X-Kbchat-Assistant, and get exactly what one of its widget keys would (collection, persona,
    model, caps). Cross-site requests, and assistants without `fullpage`, are refused alike."""
    if not from_this_site(request):
        raise HTTPException(403, "the full-page assistant answers its own pages only")
    assistants = getattr(request.app.state, "assistants", None)
    page = assistants.page(assistant) if assistants is not None else None
    if page is None:
        raise HTTPException(403, "no full-page assistant by that name")
    collection = page.settings.collection or settings.collection
    # key "": no widget key; origins []: this server only
    widget = WidgetKey.model_construct(key="", collection=collection, origins=[])
    return Caller(widget=widget, assistant=page)


def admin_caller(request: Request) -> Caller:
    """Dependency for admin routes: refused outright until an admin key is configured."""
    settings: Settings = request.app.state.services.settings
    if settings.admin_api_key is None:
        raise HTTPException(403, "admin routes are disabled: set KBCHAT_ADMIN_API_KEY")
    key = presented_admin_key(request.headers)
    if not key:
        raise HTTPException(
            401,
            "admin key required (Authorization: Bearer KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    wait = request.app.state.throttles.admin_locked(client_address(request))
    if wait is not None:
        raise too_many(wait, "too many wrong admin keys")
    if not _admin_key_matches(request, settings, key):
        raise HTTPException(403, "wrong admin key")
    return Caller(admin=True)


ChatCaller = Annotated[Caller, Depends(chat_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]


def make_limiter(store: BudgetStore | None = None) -> Limiter:
    """slowapi for the routes that only need their own per-IP limit (feedback), counting in the
    same Redis as the budgets when one is configured, and, like them, in process memory while
    Redis is unreachable (slowapi's in-memory fallback)."""
    if store is None or store.redis_url is None:
        return Limiter(key_func=get_remote_address, headers_enabled=False)
    return Limiter(
        key_func=get_remote_address,
        headers_enabled=False,
        storage_uri=store.redis_url,
        storage_options=redis_options(store.prefix),
        in_memory_fallback_enabled=True,
    )
