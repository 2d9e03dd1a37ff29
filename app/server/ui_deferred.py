"""The Gradio UI built after the server listens, so `kbchat serve` answers /api/ready without
waiting for Gradio (its import and the UI's construction are about half of a start's CPU).

`DeferredUI` is mounted at "/" in the UI's place from the start: a request for a UI page before
the UI is built waits for it (never a 404, never a half-built page); once built, every request
goes straight to it. The build runs in a worker thread started by the app's lifespan, and the
Gradio app's own lifespan (its queue, its cache cleanup) runs from there until shutdown.
/api/ready vouches for the API (model, store), not for the UI: it reports the UI's state as
`ui` without letting it change `ready`, as it does for Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import Literal

import anyio.to_thread
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
WAIT_S = 300.0
"""How long a request for the UI waits for the build (a start on a loaded 2-core machine takes
seconds; this only bounds a request if the build hangs)."""
State = Literal["waiting", "building", "ready", "failed"]
Build = Callable[[], tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[object]]]]
"""Builds the UI (in a worker thread): its ASGI app and its lifespan (entered on the loop)."""


class DeferredUI:
    """An ASGI app that becomes the UI once `build` has run (see the module docstring)."""

    def __init__(self, build: Build, *, wait_s: float = WAIT_S) -> None:
        self._build = build
        self.wait_s = wait_s
        self.state: State = "waiting"
        self._app: ASGIApp | None = None
        self._done: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, after: Callable[[], object] | None = None) -> None:
        """Start the build (from the app's lifespan, on its event loop); returns at once.
        `after`: a blocking call to wait for first (in a worker thread): the start-up warm-up,
        which a first chat needs and the UI's 2-3 CPU seconds would otherwise slow down."""
        self._done, self._stop = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._run(after), name="kbchat-ui-build")

    async def stop(self) -> None:
        """Leave the UI's lifespan (from the app's lifespan, at shutdown)."""
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        if self.state == "waiting":  # still waiting for `after`: nothing built, nothing to wait for
            self._task.cancel()
        elif self.state == "building":
            # the worker thread cannot be interrupted: let the build end, then shut it down
            log.info("the web UI is still being built; shutting down after it")
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, after: Callable[[], object] | None) -> None:
        assert self._done is not None and self._stop is not None
        try:
            if after is not None:
                await anyio.to_thread.run_sync(after, abandon_on_cancel=True)
            if self._stop.is_set():  # shut down before the build began: nothing to build
                return
            self.state = "building"
            app, lifespan = await anyio.to_thread.run_sync(self._build)
            async with lifespan():
                self._app, self.state = app, "ready"
                self._done.set()
                await self._stop.wait()
        except Exception:
            log.exception("the web UI could not be built; the API keeps serving")
            self.state = "failed"
        finally:
            self._done.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None and self._done is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), self.wait_s)
        if self._app is None:  # not started, failed or too slow: say so, never a 404
            if scope["type"] != "http":
                return  # a websocket is closed (403) by the server when not accepted
            text = (
                "The web UI could not be started; the log says why."
                if self.state == "failed"
                else "The web UI is starting; try again in a moment."
            )
            await PlainTextResponse(text, 503, headers={"Retry-After": "5"})(scope, receive, send)
            return
        await self._app(scope, receive, send)
