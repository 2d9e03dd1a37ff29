"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, for every /v1 answer
that is not a success, so OpenAI SDKs raise their typed errors (BadRequestError, NotFoundError,
AuthenticationError, RateLimitError, InternalServerError...) with a message that says what is
wrong. /api keeps its own shape: these handlers live on the /v1 routes only (`OpenAIRoute`),
plus the body-size refusal in `app.server.middleware`, which asks `is_openai_path`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.embeddings.remote import RemoteEmbeddingError

log = logging.getLogger(__name__)
PREFIX = "/v1"

# status -> (type, code), as OpenAI answers them; a 422 becomes 400 (OpenAI's status for
# invalid parameters, which SDKs map to BadRequestError).
_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}
INTERNAL = "The server had an error while processing your request."
EMBEDDINGS_DOWN = "The embedding service is unavailable; try again shortly."


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error shape, as every /v1 route answers its errors."""

    error: ErrorDetail


RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "invalid parameter (`param` names it) or malformed JSON",
        401: "unknown widget key (`invalid_api_key`)",
        403: "origin or knowledge base not allowed for this key",
        404: "unknown model (`model_not_found`) or URL",
        413: "request body too large",
        429: "rate limit exceeded (`rate_limit_exceeded`, Retry-After)",
        500: "internal error (no detail)",
        503: "too many chats in progress (Retry-After)",
    }.items()
}


def is_openai_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """OpenAI's error body; ASCII JSON, so nothing a client sent can break the encoding."""
    status = 400 if status == 422 else status
    kind, default_code = _KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    error = {"message": message, "type": kind, "param": param, "code": code or default_code}
    body = json.dumps({"error": error}, ensure_ascii=True)
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


class OpenAIError(Exception):
    """Raised by a /v1 route to answer with OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers

    def response(self) -> Response:
        return error_response(
            self.status, self.message, param=self.param, code=self.code, headers=self.headers
        )


def param_path(loc: tuple[Any, ...]) -> str | None:
    """Pydantic's location as OpenAI names a parameter: ("body", "messages", 0, "role") ->
    "messages[0].role"; None for the body as a whole."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def validation_response(exc: RequestValidationError) -> Response:
    """400 naming the first invalid parameter and what is wrong (the input is not echoed)."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "The request body is not valid JSON.")
    param = param_path(tuple(first.get("loc", ())))
    reason = str(first.get("msg", "invalid value"))
    message = f"Invalid value for '{param}': {reason}" if param else f"Invalid body: {reason}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return error_response(400, message, param=param)


def http_response(exc: HTTPException) -> Response:
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    return error_response(exc.status_code, detail, headers=exc.headers)


class OpenAIRoute(APIRoute):
    """A /v1 route: every error it raises (its dependencies' too) answers in OpenAI's shape;
    an unexpected one is logged and answered 500 without its detail."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except OpenAIError as exc:
                return exc.response()
            except RequestValidationError as exc:
                return validation_response(exc)
            except HTTPException as exc:
                return http_response(exc)
            except RemoteEmbeddingError as exc:  # logged, never sent: it names a host
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return error_response(503, EMBEDDINGS_DOWN, headers={"Retry-After": "5"})
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return error_response(500, INTERNAL)

        return route
