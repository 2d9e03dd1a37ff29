"""ASGI middleware that holds the server's limits before any route reads a request: body sizes
(chunked bodies too, counted as they arrive), uploads per client, the Host header. Their
refusals take the path's error shape: OpenAI's on /v1, problem details elsewhere."""

from __future__ import annotations

from contextlib import suppress

from fastapi.middleware.trustedhost import TrustedHostMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.server import problems
from app.server.access import Throttles, presented_admin_key
from app.server.openai_errors import error_response, is_openai_path
from app.server.problems import problem_response

GRADIO_UPLOAD = "/gradio_api/upload"  # the mounted UI's upload route (mounted at "/")
ADMIN_API = "/api/collections/"


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse bodies over the limit with 413: at once when Content-Length says so, otherwise
    (chunked) by counting bytes as they arrive, so an endless body is never buffered. Uploads
    get the upload limit: the Web UI's upload route, and the admin API when the request carries
    an admin key (FastAPI reads a body before it checks the key, so requests without one get the
    JSON limit; wrong keys are throttled by UploadGate); the rest get the JSON limit."""

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    @staticmethod
    def _is_upload(scope: Scope) -> bool:
        if scope["path"] == GRADIO_UPLOAD:
            return True
        return scope["path"].startswith(ADMIN_API) and bool(
            presented_admin_key(Headers(scope=scope))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        upload = self._is_upload(scope)
        limit = self.upload_limit if upload else self.json_limit
        too_large = f"request body is larger than {limit // 1024} KiB"
        refusal = (
            error_response(413, too_large)  # OpenAI's error shape on /v1
            if is_openai_path(scope["path"])
            else problem_response(413, too_large, instance=scope["path"])
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await refusal(scope, receive, send)
            return
        received, refused, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise _BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return  # whatever the app makes of the aborted body, the answer is our 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        with suppress(_BodyTooLarge):
            await self.app(scope, counted, guarded)
        if refused and not started:
            await refusal(scope, receive, send)


class UploadGate:
    """Stop uploads before their body is read: the Web UI's upload route takes files from anyone
    who loads the page (Gradio saves them before any handler runs), so it is rate limited per
    client IP; the admin API refuses at once a client locked out for wrong admin keys."""

    def __init__(self, app: ASGIApp, throttles: Throttles) -> None:
        self.app, self.throttles = app, throttles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in {"POST", "PUT", "PATCH"}:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait, what = None, ""
            throttles = self.throttles
            if scope["path"] == GRADIO_UPLOAD:
                wait = await throttles.run(lambda: throttles.upload.hit(f"ip:{address}"))
                what = "too many uploads"
            elif scope["path"].startswith(ADMIN_API):
                wait = await throttles.run(lambda: throttles.admin_locked(address))
                what = "too many wrong admin keys"
            if wait is not None:
                response = problem_response(
                    429,
                    f"{what}; try again in {wait} s",
                    instance=scope["path"],
                    headers={"Retry-After": str(wait)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_HOST_PASSED = "kbchat.host_passed"


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's Host check, whose refusal (plain text) becomes a problem on /api."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        async def passed(scope: Scope, receive: Receive, send: Send) -> None:
            scope[_HOST_PASSED] = True  # the check let it through: what follows is the app's
            await app(scope, receive, send)

        super().__init__(passed, allowed_hosts=allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not problems.is_api_path(scope["path"]):
            await super().__call__(scope, receive, send)
            return

        replaced = False

        async def reshaped(message: Message) -> None:
            nonlocal replaced
            refusal = message["type"] == "http.response.start" and message["status"] >= 400
            if refusal and not scope.get(_HOST_PASSED):
                replaced = True  # the plain-text body that follows is dropped
                detail = "invalid Host header: not one of KBCHAT_SERVER_ALLOWED_HOSTS"
                await problem_response(message["status"], detail, instance=scope["path"])(
                    scope, receive, send
                )
            elif not replaced:
                await send(message)

        await super().__call__(scope, receive, reshaped)
