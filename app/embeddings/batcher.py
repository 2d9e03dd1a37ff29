"""Coalesce concurrent query embeddings into one encode call.

A server answers many questions at once; encoding them one by one makes concurrent requests fight
for the same CPU cores, while one batched forward pass costs little more than a single one.
Requests wait at most `wait_ms` for company, so a lone request is barely delayed.
"""

from __future__ import annotations

import queue
import threading
import time
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
    ) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._wait = wait_ms / 1000
        self._queue: queue.Queue[tuple[str, Future[np.ndarray]]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def embed(self, text: str) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        self._queue.put((text, future))
        self._ensure_worker()
        return future.result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="e5-queries", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._wait
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                vectors = self._encode([text for text, _ in batch])
            except Exception as exc:  # every waiting caller gets the error, none hangs
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)
