"""Concurrent queries share one encode call; errors reach every waiting caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.embeddings.batcher import QueryBatcher


def test_concurrent_queries_are_batched_and_answered_in_order() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        gate.wait(5)  # hold the first call so the others queue up behind it
        calls.append(list(texts))
        return np.array([[float(len(t)), float(t.count("a"))] for t in texts])

    batcher = QueryBatcher(encode, max_batch=16, wait_ms=50)
    texts = [f"q{'a' * i}" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(batcher.embed, t) for t in texts]
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    for text, vector in zip(texts, results, strict=True):
        assert vector.tolist() == [float(len(text)), float(text.count("a"))]
    assert sum(len(c) for c in calls) == 12
    assert len(calls) < 12  # some were embedded together


def test_an_encode_error_reaches_every_caller_and_the_worker_survives() -> None:
    fail = True

    def encode(texts: list[str]) -> np.ndarray:
        if fail:
            raise RuntimeError("model exploded")
        return np.ones((len(texts), 2))

    batcher = QueryBatcher(encode, wait_ms=1)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.embed("x")
    fail = False
    assert batcher.embed("y").tolist() == [1.0, 1.0]
