"""Rate budgets counted in process memory (the default): decisions stay exact while expired
entries are swept by one long-lived thread, not by a thread started for nearly every request."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from limits import parse
from limits.strategies import MovingWindowRateLimiter

from app.server.access import RateBudget
from app.server.rate_store import BudgetStore, SweptMemoryStorage


def test_spaced_requests_start_no_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """limits' own storage starts a 10 ms timer thread whenever none is alive: a thread start
    (on the event loop) for nearly every chat at tens of chats a second."""
    budget = RateBudget("1000/minute", "chat", BudgetStore())
    started: list[str] = []
    real_start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for _ in range(15):
        assert budget.hit("ip:192.0.2.1") is None
        time.sleep(0.02)  # longer than limits' timer: it would have ended and start again
    assert len(started) <= 1


def test_decisions_stay_exact_and_expired_entries_are_swept() -> None:
    storage = SweptMemoryStorage(sweep_s=0.05)
    limiter, item = MovingWindowRateLimiter(storage), parse("2/second")
    assert limiter.hit(item, "a") and limiter.hit(item, "a")
    assert not limiter.hit(item, "a")  # the window is full
    deadline = time.monotonic() + 5
    while any(storage.events.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(storage.events.values())  # swept once the entries expired
    assert limiter.hit(item, "a")  # and the budget is there again


def test_the_sweeper_ends_with_its_storage() -> None:
    storage: Any = SweptMemoryStorage(sweep_s=0.02)
    MovingWindowRateLimiter(storage).hit(parse("5/second"), "a")
    sweeper = storage._sweeper
    assert sweeper is not None and sweeper.is_alive()
    del storage
    for _ in range(40):  # the storage sits in a reference cycle: a collection frees it
        gc.collect()
        sweeper.join(timeout=0.05)
        if not sweeper.is_alive():
            break
    assert not sweeper.is_alive()
