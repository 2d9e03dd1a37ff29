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
from collections import deque
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


async def with_keepalive(
    events: Iterator[T], interval: float, merge: Callable[[T, T], T | None] | None = None
) -> AsyncIterator[T | None]:
    """The items of a blocking iterator, read by one worker thread from start to end; None after
    every `interval` seconds without an item, for the caller to send a keep-alive. (A worker
    thread call per item cost ~0.1 ms of CPU each: 20 ms for a 200-token answer.)

    `merge(a, b)`: one item for two that arrived together (None: keep them apart). Items that
    wait together are merged, so a fast LLM's tokens leave as a few SSE events instead of one
    each (~0.25 ms of CPU per event); nothing ever waits for company, so the first token leaves
    as soon as it comes.

    When the caller stops early (the client closed the stream: the widget's Stop), the reading
    thread closes the iterator after the item in flight (a generator cannot be closed while it
    runs), so a generator's `finally` and `with` blocks run: the chain closes its stream to the
    LLM rather than paying for the rest of an answer nobody reads."""
    loop = asyncio.get_running_loop()
    pending: deque[tuple[str, Any]] = deque()  # appended by the reader, taken on the loop
    arrived = asyncio.Event()
    waking = [False]  # a wake-up of the event loop is on its way: the reader sends no other
    stop = threading.Event()

    def hand_over(kind: str, value: Any) -> None:
        """One wake-up of the event loop per burst, not per item (each woke it: ~0.1 ms)."""
        pending.append((kind, value))
        if waking[0]:
            return
        waking[0] = True
        try:
            loop.call_soon_threadsafe(arrived.set)
        except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
            stop.set()

    def read_all() -> None:
        try:
            for item in events:
                if stop.is_set():
                    break
                hand_over("item", item)
            else:
                hand_over("end", None)
                return
        except Exception as exc:  # the caller raises it, as if it had called next() itself
            hand_over("error", exc)
            return
        try:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        except Exception:
            log.exception("closing an abandoned chat stream failed")

    reader = asyncio.ensure_future(anyio.to_thread.run_sync(read_all))
    try:
        while True:
            if not pending:
                waking[0] = False  # before looking again: an item added after it wakes us
                if not pending:
                    try:
                        await asyncio.wait_for(arrived.wait(), interval)
                    except TimeoutError:
                        yield None
                    arrived.clear()
                    continue
            kind, value = pending.popleft()
            if kind == "end":
                return
            if kind == "error":
                raise value
            while merge is not None and pending and pending[0][0] == "item":
                merged = merge(value, pending[0][1])
                if merged is None:
                    break
                value = merged
                pending.popleft()
            yield value
    finally:
        stop.set()
        reader.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("chat stream reader failed", exc_info=task.exception())


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
