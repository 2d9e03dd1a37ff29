"""Bounded chat concurrency for the API, and the async plumbing that keeps the server responsive
while an LLM is slow or hung.

A chat holds a worker thread while it talks to the LLM. Without a bound, a hung LLM fills the
thread pool and everything else (health checks included) waits behind it. So at most
`max_concurrent_chats` API chats run at once, at most `max_queued_chats` wait (on the event loop,
holding no thread), and any beyond that get 503 with Retry-After at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio.to_thread

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_AFTER_S = 5  # what a refused client is told to wait: a slot often frees within seconds


class ChatsBusy(Exception):
    """Every chat slot and every queue place is taken."""


class ChatGate:
    """Admission happens at once (or ChatsBusy); the wait for a slot happens later, so a
    streaming response can send keep-alive comments meanwhile. One per app and event loop."""

    def __init__(self, max_running: int, max_queued: int) -> None:
        self.capacity = max_running + max_queued
        self._slots = asyncio.Semaphore(max_running)
        self._admitted = 0  # running + waiting; only touched on the event loop

    @property
    def admitted(self) -> int:
        return self._admitted

    def admit(self) -> Ticket:
        if self._admitted >= self.capacity:
            raise ChatsBusy
        self._admitted += 1
        return Ticket(self)


class Ticket:
    """One admitted chat: wait for a slot (until the deadline), then release exactly once."""

    def __init__(self, gate: ChatGate) -> None:
        self._gate = gate
        self._holds_slot = False
        self._released = False

    async def wait(self, deadline: float) -> bool:
        """True once a slot is held; False when the deadline came first (the chat then runs
        without the LLM: its deadline has passed, so the chain answers with the fallback)."""
        try:
            await asyncio.wait_for(self._gate._slots.acquire(), deadline - time.monotonic())
        except TimeoutError:
            return False
        self._holds_slot = True
        return True

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._gate._admitted -= 1
        if self._holds_slot:
            self._gate._slots.release()


async def run_sync(func: Callable[[], T]) -> T:
    """Run blocking work in a worker thread (the chain: embedding, the LLM call)."""
    return await anyio.to_thread.run_sync(func)


async def with_keepalive(events: Iterator[T], interval: float) -> AsyncIterator[T | None]:
    """The items of a blocking iterator, each fetched in a worker thread; None after every
    `interval` seconds without an item, for the caller to send a keep-alive.

    When the caller stops early (the client closed the stream: the widget's Stop), the iterator
    is closed, so a generator's `finally` and `with` blocks run: the chain closes its stream to
    the LLM rather than paying for the rest of an answer nobody reads."""
    done = object()
    task: asyncio.Future[Any] | None = None
    try:
        while True:
            task = asyncio.ensure_future(anyio.to_thread.run_sync(next, events, done))
            while not (await asyncio.wait({task}, timeout=interval))[0]:
                yield None
            item = task.result()
            if item is done:
                task = None  # exhausted: nothing to close
                return
            yield item
    finally:
        if task is not None:
            close_when_idle(events, task)


def close_when_idle(events: Iterator[Any], pending: asyncio.Future[Any] | None) -> None:
    """Close a generator in a worker thread once no thread is inside it (a generator cannot be
    closed while it runs: the `next` in flight ends with the LLM's next token)."""
    close = getattr(events, "close", None)
    if close is None:
        return

    def close_quietly() -> None:
        try:
            close()
        except Exception:
            log.exception("closing an abandoned chat stream failed")

    def start(_: object = None) -> None:
        threading.Thread(target=close_quietly, name="kbchat-close-stream", daemon=True).start()

    if pending is None or pending.done():
        start()
    else:
        pending.add_done_callback(start)


async def slot_with_keepalive(
    ticket: Ticket, deadline: float, interval: float
) -> AsyncIterator[bool | None]:
    """Wait for a slot like `Ticket.wait`, yielding None every `interval` seconds meanwhile;
    the last item is the wait's outcome."""
    task = asyncio.ensure_future(ticket.wait(deadline))
    try:
        while not (await asyncio.wait({task}, timeout=interval))[0]:
            yield None
    except BaseException:
        task.cancel()
        raise
    yield task.result()
