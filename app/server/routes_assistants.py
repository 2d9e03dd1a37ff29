"""Assistants over HTTP: admin CRUD and widget keys under /api/assistants, and the public
`GET /api/widget/config` the widget draws itself from. Errors are problem details."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from slowapi import Limiter

from app.server import problems
from app.server.access import AdminCaller, ChatCaller
from app.server.assistant_schema import (
    SLUG_PATTERN,
    AssistantCreate,
    AssistantOut,
    AssistantPatch,
    AssistantSettings,
    KeyCreate,
    KeyCreated,
    WidgetConfig,
)
from app.server.assistants import (
    AssistantConflict,
    AssistantNotFound,
    Assistants,
    InvalidAssistant,
)
from app.server.routes_admin import ADMIN_BEARER

AssistantId = Annotated[str, Path(pattern=SLUG_PATTERN, description="The assistant's id.")]
KeyId = Annotated[str, Path(pattern=r"^key_[0-9a-f]{12}$", description="A key's id.")]
_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429)


def assistants_router() -> APIRouter:
    router = APIRouter(prefix="/api/assistants", tags=["assistants"])
    admin: dict[str, Any] = {
        "dependencies": [Depends(ADMIN_BEARER)],
        "responses": problems.responses(*_ERRORS),
    }

    def store(request: Request) -> Assistants:
        assistants: Assistants = request.app.state.assistants
        return assistants

    @router.get("", **admin)
    def list_assistants(request: Request, _: AdminCaller) -> list[AssistantOut]:
        """Every assistant with its settings and its keys' ids and origins (admin)."""
        return store(request).all()

    @router.post("", status_code=201, **admin)
    def create(request: Request, body: AssistantCreate, _: AdminCaller) -> AssistantOut:
        """Create an assistant (admin); 409 if the id is taken. It has no widget key yet."""
        with _errors():
            return store(request).create(body)

    @router.get("/{assistant}", **admin)
    def read(request: Request, assistant: AssistantId, _: AdminCaller) -> AssistantOut:
        """One assistant (admin)."""
        with _errors():
            return store(request).get(assistant)

    @router.put("/{assistant}", **admin)
    def replace(
        request: Request, assistant: AssistantId, body: AssistantSettings, _: AdminCaller
    ) -> AssistantOut:
        """Replace every setting (admin): fields left out get their defaults. Keys stay."""
        with _errors():
            return store(request).replace(assistant, body)

    @router.patch("/{assistant}", **admin)
    def update(
        request: Request, assistant: AssistantId, body: AssistantPatch, _: AdminCaller
    ) -> AssistantOut:
        """Change the settings given, keep the others (admin)."""
        with _errors():
            return store(request).update(assistant, body)

    @router.delete("/{assistant}", status_code=204, response_class=Response, **admin)
    def delete(request: Request, assistant: AssistantId, _: AdminCaller) -> Response:
        """Delete the assistant and its widget keys (admin); its conversations stay."""
        with _errors():
            store(request).delete(assistant)
        return Response(status_code=204)

    @router.post("/{assistant}/keys", status_code=201, **admin)
    def add_key(
        request: Request, assistant: AssistantId, body: KeyCreate, _: AdminCaller
    ) -> KeyCreated:
        """A new widget key for the sites in `origins` (admin). The key is in this answer only:
        the server keeps its hash."""
        with _errors():
            return store(request).add_key(assistant, body.origins)

    @router.delete("/{assistant}/keys/{key_id}", status_code=204, response_class=Response, **admin)
    def delete_key(
        request: Request, assistant: AssistantId, key_id: KeyId, _: AdminCaller
    ) -> Response:
        """Revoke a widget key (admin); pages using it get 401 from then on."""
        with _errors():
            store(request).delete_key(assistant, key_id)
        return Response(status_code=204)

    return router


def widget_config_router(limiter: Limiter, rate: str) -> APIRouter:
    router = APIRouter(prefix="/api/widget", tags=["widget"])

    @router.get("/config", responses=problems.responses(401, 403, 429))
    @limiter.limit(rate)
    def config(request: Request, caller: ChatCaller) -> WidgetConfig:
        """How the widget looks and greets, for the widget key in X-Kbchat-Key (checked like
        /api/chat, Origin included): the key's assistant, or the default look for
        KBCHAT_WIDGET_KEYS and the demo key. Never instructions, keys or caps."""
        if caller.assistant is None:
            return WidgetConfig.of("", AssistantSettings())
        return WidgetConfig.of(caller.assistant.assistant, caller.assistant.settings)

    return router


@contextmanager
def _errors() -> Iterator[None]:
    """The store's refusals as problem details; invalid merged settings as a 422."""
    try:
        yield
    except AssistantNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except AssistantConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except InvalidAssistant as exc:
        raise HTTPException(422, str(exc)) from exc
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc
