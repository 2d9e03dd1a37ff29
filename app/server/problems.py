"""One error shape for /api: RFC 9457 problem details (`application/problem+json`), whatever
refused the request: a route, request validation, the rate limiter, the body-size and host
checks in front of the app, or an unexpected exception (500, its detail only in the log).

Other paths keep their own shape: /v1 answers OpenAI's (`app.server.openai_errors`, caught by
its route class before these handlers see anything), the Web UI and /docs FastAPI's default.

The shape is five fields, so it is written here: the problem-details libraries for FastAPI
install app-wide handlers, which would also take over /v1 and the mounted UI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from slowapi.errors import RateLimitExceeded
from starlette.exceptions import HTTPException

from app.embeddings.remote import RemoteEmbeddingError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
API_PREFIX = "/api"
INTERNAL = "the server had an error while processing the request; the log has the details"
EMBEDDINGS_DOWN = "the embedding service is unavailable; try again shortly"


class Problem(BaseModel):
    """RFC 9457 problem details; `detail` says what went wrong for a person to read."""

    model_config = ConfigDict(extra="allow")
    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="The HTTP status phrase, e.g. 'Not Found'.")
    status: int = Field(description="The HTTP status code, repeated.")
    detail: str = Field(description="What went wrong with this request, in English.")
    instance: str = Field(description="The request path the problem occurred on.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="422 only: each invalid field, with its location (`loc`) and message."
    )


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The problem body; ASCII JSON, so nothing a client sent can break the encoding."""
    body = {
        "type": "about:blank",  # the status code says all there is (RFC 9457, section 4.2.1)
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **jsonable_encoder(extra),
    }
    text = json.dumps(body, ensure_ascii=True)
    return Response(text, status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


# What each status means on /api, for the OpenAPI schema.
_MEANINGS = {
    400: "malformed request: a body that cannot be parsed, a bad file name, a bad Host header",
    401: "a key is required, or the widget key is unknown",
    403: "admin routes disabled, wrong admin key, or origin/collection not allowed",
    404: "no such knowledge base, session, document or answer",
    409: "the knowledge base is busy (another sync) or was built another way",
    413: "request body too large",
    422: "invalid input: `errors` lists each field with its location",
    429: "rate limit exceeded; Retry-After says when to try again",
    503: "too many chats in progress, or not ready; Retry-After where it applies",
}
_REF = {"$ref": "#/components/schemas/Problem"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses, each answered with a Problem."""
    content = {MEDIA_TYPE: {"schema": _REF}}
    return {s: {"description": _MEANINGS[s], "content": content} for s in statuses}


def _validation(request: Request, exc: RequestValidationError) -> Response:
    """422 with what is wrong where; the offending input is not echoed back (it may be large,
    or text that cannot be encoded, such as a lone surrogate)."""
    hidden = {"input", "ctx", "url"}
    errors = [{k: v for k, v in e.items() if k not in hidden} for e in exc.errors()]
    if not is_api_path(request.url.path):
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")
    if errors and errors[0].get("type") == "json_invalid":
        detail = "the request body is not valid JSON"
        return problem_response(422, detail, instance=request.url.path, errors=errors)
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
    reason = errors[0].get("msg", "invalid value") if errors else "invalid value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem_response(
        422, f"{where}: {reason}{more}", instance=request.url.path, errors=errors
    )


async def _http(request: Request, exc: HTTPException) -> Response:
    if not is_api_path(request.url.path):
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=exc.headers)


def _rate_limited(request: Request, exc: RateLimitExceeded) -> Response:
    """429 with Retry-After: the limit's window, when the oldest counted request expires."""
    window = exc.limit.limit.get_expiry() if exc.limit is not None else 60
    return problem_response(
        429,
        f"rate limit exceeded ({exc.detail}); try again in {window} s",
        instance=request.url.path,
        headers={"Retry-After": str(window)},
    )


def _embeddings_down(request: Request, exc: Exception) -> Response:
    """503: the remote embedding server failed; the reason is logged, never sent (it names a
    host). A replica's own fault would be a 500; this one passes, so clients may retry."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    if not is_api_path(request.url.path):
        return Response("Service Unavailable", 503, media_type="text/plain")
    return problem_response(
        503, EMBEDDINGS_DOWN, instance=request.url.path, headers={"Retry-After": "5"}
    )


def _unexpected(request: Request, exc: Exception) -> Response:
    """500 without the exception's text (paths, hosts, SQL); Starlette logs the traceback."""
    if not is_api_path(request.url.path):
        return Response("Internal Server Error", 500, media_type="text/plain")
    return problem_response(500, INTERNAL, instance=request.url.path)


def install(app: FastAPI) -> None:
    """Problem handlers on the app, and the Problem model in its OpenAPI components."""
    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: _http,
        RequestValidationError: _validation,
        RateLimitExceeded: _rate_limited,
        RemoteEmbeddingError: _embeddings_down,
        Exception: _unexpected,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()  # cached by FastAPI in app.openapi_schema
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema()
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
