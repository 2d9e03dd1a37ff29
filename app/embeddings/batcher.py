"""Coalesce concurrent query embeddings into one encode call, and keep recent query vectors.

A server answers many questions at once; encoding them one by one makes concurrent requests fight
for the same CPU cores, while one batched forward pass costs little more than a single one.
Requests wait at most `wait_ms` for company, so a lone request is barely delayed. A request
waits for at most the batch being encoded when it arrives, then its own, as long as no more than
`max_batch` queries wait: the server's chat gate (KBCHAT_SERVER_MAX_CONCURRENT_CHATS, 8) keeps
it so unless query translation gives each chat more than four searches.

A query's vector depends only on its text, so the last `cache_size` are kept: a chat turn embeds
its question twice (the small-talk check, then retrieval), and a widget's visitors ask the same
questions. Identical texts waiting together are encoded once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class QueryBatcher:
    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        *,
        max_batch: int = 32,
        wait_ms: float = 2.0,
        cache_size: int = 1024,
        on_batch: Callable[[int], None] | None = None,
        on_cached: Callable[[], None] | None = None,
    ) -> None:
        """`on_batch(n)`: n texts went to one encode call; `on_cached()`: a query was answered
        from the cache (the server's metrics count both)."""
        self._encode = encode
        self._on_batch = on_batch
        self._on_cached = on_cached
        self._max_batch = max_batch
        self._wait = wait_ms / 1000
        self._queue: queue.Queue[tuple[str, Future[np.ndarray]]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # guarded by _lock

    def embed(self, text: str) -> np.ndarray:
        """The query's vector (read-only: callers share it)."""
        with self._lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
        if vector is not None:
            if self._on_cached is not None:
                self._on_cached()
            return vector
        future: Future[np.ndarray] = Future()
        self._queue.put((text, future))
        self._ensure_worker()
        return future.result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="e5-queries", daemon=True)
                self._worker.start()

    def _keep(self, text: str, vector: np.ndarray) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            self._cache[text] = vector
            self._cache.move_to_end(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._wait
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            texts = list(dict.fromkeys(text for text, _ in batch))
            if self._on_batch is not None:
                self._on_batch(len(texts))
            try:
                vectors = self._encode(texts)
            except Exception as exc:  # every waiting caller gets the error, none hangs
                for _, future in batch:
                    future.set_exception(exc)
                continue
            by_text = {}
            for text, vector in zip(texts, vectors, strict=True):
                vector = np.array(vector)  # its own memory, not a view that pins the batch
                vector.setflags(write=False)
                by_text[text] = vector
                self._keep(text, vector)
            for text, future in batch:
                future.set_result(by_text[text])
