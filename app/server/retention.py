"""The retention task (KBCHAT_RETENTION_DAYS): erases expired conversations at start and then
every hour, in a daemon thread so a slow database never blocks the event loop.

Each run is idempotent (app.server.erasure.prune_expired), so every replica runs its own task
without coordination; a failed run is logged and retried at the next tick."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from app.server.erasure import prune_expired

log = logging.getLogger(__name__)
INTERVAL_S = 3600.0


class RetentionTask:
    """Start with `start()`, stop with `stop()` (wakes the thread at once and waits for it)."""

    def __init__(self, engine: Engine, days: int, interval_s: float = INTERVAL_S) -> None:
        self.engine = engine
        self.days = days
        self.interval_s = interval_s
        self.runs = 0  # completed runs, for tests and debugging
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.days <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="kbchat-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                prune_expired(self.engine, self.days)
            except Exception:  # the database may be down for a while: try again next tick
                log.exception("retention: pruning expired conversations failed")
            self.runs += 1
            self._stop.wait(self.interval_s)
