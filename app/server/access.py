"""Who may do what: the admin key, public widget keys bound to a collection and its sites,
same-origin pages, and rate limits per widget key and per client IP (slowapi)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from slowapi import Limiter
from slowapi.util import get_remote_address

from app.settings import WidgetKey

if TYPE_CHECKING:
    from app.settings import Settings

KEY_HEADER = "x-kbchat-key"
DEMO_KEY = "kbchat-demo-key"  # used only when no widget key is configured; same-origin only


@dataclass(frozen=True)
class Caller:
    """What a request is allowed: a fixed collection for widget keys, anything for the rest."""

    widget: WidgetKey | None = None
    admin: bool = False

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


def presented_key(request: Request) -> str | None:
    key = request.headers.get(KEY_HEADER)
    if key:
        return key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def is_admin(settings: Settings, key: str | None) -> bool:
    admin = settings.admin_api_key
    return bool(admin and key and secrets.compare_digest(key, admin.get_secret_value()))


def chat_caller(request: Request) -> Caller:
    """Dependency for chat routes: checks the widget key and the Origin of browser calls."""
    settings: Settings = request.app.state.services.settings
    key = presented_key(request)
    origin = request.headers.get("origin")
    if key and is_admin(settings, key):
        return Caller(admin=True)
    widget = next(
        (w for w in widget_keys(settings) if key and secrets.compare_digest(w.key, key)), None
    )
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
        return Caller(widget=widget)
    if origin and not same_origin(request, origin):
        raise HTTPException(403, "requests from other sites need a widget key for that site")
    return Caller()


def admin_caller(request: Request) -> Caller:
    """Dependency for admin routes: refused outright until an admin key is configured."""
    settings: Settings = request.app.state.services.settings
    if settings.admin_api_key is None:
        raise HTTPException(403, "admin routes are disabled: set KBCHAT_ADMIN_API_KEY")
    key = request.headers.get("x-admin-key") or presented_key(request)
    if not key:
        raise HTTPException(
            401,
            "admin key required (Authorization: Bearer KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not is_admin(settings, key):
        raise HTTPException(403, "wrong admin key")
    return Caller(admin=True)


ChatCaller = Annotated[Caller, Depends(chat_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]


def rate_key_by_widget(request: Request) -> str:
    key = request.headers.get(KEY_HEADER)
    return f"key:{key}" if key else f"ip:{get_remote_address(request)}"


def make_limiter() -> Limiter:
    return Limiter(key_func=get_remote_address, headers_enabled=False)
