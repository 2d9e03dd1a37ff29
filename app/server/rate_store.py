"""Where the rate budgets are counted: in process memory, or in Redis when KBCHAT_REDIS_URL is
set, so that replicas behind one load balancer spend from one budget per client instead of each
giving it the full budget.

Redis down (decided): each process falls back to counting in its own memory, logs one warning,
sets the gauge `kbchat_rate_limit_shared` to 0 and counts every request it decides alone in
`kbchat_rate_limit_local_decisions`; it tries Redis again every RETRY_S seconds and goes back to
it with an INFO record. A blinking Redis therefore neither makes the public server unusable (no
503, no 500) nor leaves it unlimited: the worst case is one full budget per replica, as without
Redis. Refusing every request instead would let an outage of a mere helper take the chat down.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    from app.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_S = 5.0  # while Redis is down, one request every so often tries it again
TIMEOUT_S = 0.5  # a Redis that takes longer to connect or answer counts as down
SWEEP_S = 1.0  # how often expired in-memory budget entries are dropped


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-memory storage, its expired entries dropped by one long-lived thread.

    The library starts a fresh 10 ms timer thread whenever none is alive, so at tens of chats a
    second nearly every chat started a thread (about 0.17 ms of CPU), on the event loop, whose
    `Thread.start` waits for the new thread to run: a stall of milliseconds when the cores are
    busy. Sweeping only frees memory (every decision reads the entries' own times), so once a
    second does. The thread holds the storage weakly and ends with it."""

    def __init__(self, sweep_s: float = SWEEP_S) -> None:
        self._sweep_s = sweep_s
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()
        super().__init__()

    def _MemoryStorage__schedule_expiry(self) -> None:  # the hook its methods call
        if self._sweeper is not None:
            return
        with self._sweeper_lock:
            if self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=_sweep, args=(weakref.ref(self), self._sweep_s), daemon=True
                )
                self._sweeper.name = "kbchat-rate-sweep"
                self._sweeper.start()


def _sweep(storage: weakref.ref[SweptMemoryStorage], every: float) -> None:
    while True:
        time.sleep(every)
        alive = storage()
        if alive is None:
            return
        alive._MemoryStorage__expire_events()  # type: ignore[attr-defined]
        del alive


def redis_options(prefix: str) -> dict[str, Any]:
    """For `limits`' RedisStorage: our key prefix, short timeouts, errors as StorageError."""
    return {
        "key_prefix": prefix,
        "socket_connect_timeout": TIMEOUT_S,
        "socket_timeout": TIMEOUT_S,
        "wrap_exceptions": True,
    }


class BudgetStore:
    """One storage for all of an app's budgets (each budget names its keys apart), shared in
    Redis when a URL is given, with the in-memory fallback described in the module docstring."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "kbchat",
        registry: CollectorRegistry | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self._local = MovingWindowRateLimiter(SweptMemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._storage: Storage | None = None
        if redis_url:
            storage = storage_from_string(redis_url, **redis_options(prefix))
            if not isinstance(storage, Storage):  # Settings allows only redis schemes
                raise ValueError("KBCHAT_REDIS_URL must name a synchronous Redis storage")
            self._storage = storage
            self._shared = MovingWindowRateLimiter(storage)
        self._retry_s = retry_s
        self._down_since: float | None = None
        self._last_try = 0.0
        self._lock = threading.Lock()
        self._gauge: Gauge | None = None
        self._local_decisions: Counter | None = None
        if redis_url:
            self._gauge, self._local_decisions = _metrics(registry)
        if self._gauge is not None:
            self._gauge.set(1)

    @classmethod
    def from_settings(
        cls, settings: Settings, registry: CollectorRegistry | None = None
    ) -> BudgetStore:
        url = settings.redis_url.get_secret_value() if settings.redis_url else None
        return cls(url, prefix=settings.redis_prefix, registry=registry)

    @property
    def shared(self) -> bool:
        """Redis is configured (reachable or not): calls may wait on the network."""
        return self._shared is not None

    def run(self, decide: Callable[[MovingWindowRateLimiter], T]) -> T:
        """`decide` with the Redis limiter, or with the local one while Redis is down."""
        if self._shared is not None and self._should_try():
            try:
                result = decide(self._shared)
            except StorageError as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return result
        if self._local_decisions is not None:
            self._local_decisions.inc()
        return decide(self._local)

    def ping(self) -> bool | None:
        """Redis answers (None when none is configured); for /api/ready."""
        if self._storage is None:
            return None
        try:
            return bool(self._storage.check())
        except Exception:  # the detail (host, password) belongs in no answer
            return False

    def _should_try(self) -> bool:
        if self._down_since is None:
            return True
        with self._lock:  # one request at a time finds out whether Redis is back
            now = time.monotonic()
            if now - self._last_try < self._retry_s:
                return False
            self._last_try = now
            return True

    def _went_down(self, exc: StorageError) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = self._last_try = time.monotonic()
                log.warning(
                    "Redis unreachable for rate limits (%s): each process counts its own budgets "
                    "until it is back",
                    type(exc.storage_error).__name__,
                )
                if self._gauge is not None:
                    self._gauge.set(0)

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                log.info(
                    "Redis is back for rate limits after %.0f s",
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
                if self._gauge is not None:
                    self._gauge.set(1)


def _metrics(registry: CollectorRegistry | None) -> tuple[Gauge | None, Counter | None]:
    from prometheus_client import Counter, Gauge

    if registry is None:
        return None, None
    gauge = Gauge(
        "kbchat_rate_limit_shared",
        "1 while the rate limits are counted in Redis; 0 while Redis is unreachable and each"
        " process counts alone.",
        registry=registry,
    )
    local = Counter(
        "kbchat_rate_limit_local_decisions",
        "Rate-limit decisions made in process memory because Redis was unreachable.",
        registry=registry,
    )
    return gauge, local
