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


def test_a_query_seen_recently_is_not_encoded_again() -> None:
    """A chat turn embeds its question twice (the small-talk check, then retrieval), and a
    widget's visitors ask the same questions: the vector is the same, so it is kept."""
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    batches: list[int] = []
    cached: list[bool] = []
    batcher = QueryBatcher(
        encode,
        wait_ms=1,
        cache_size=2,
        on_batch=batches.append,
        on_cached=lambda: cached.append(True),
    )
    first = batcher.embed("query: a")
    again = batcher.embed("query: a")
    assert again.tolist() == first.tolist() == [8.0, 1.0]
    assert calls == [["query: a"]]
    with pytest.raises(ValueError):  # callers share the kept vector: nobody may change it
        again[0] = 0.0
    batcher.embed("query: bb")
    batcher.embed("query: ccc")  # the cache holds two: "query: a" is the oldest, dropped
    batcher.embed("query: a")
    assert calls == [["query: a"], ["query: bb"], ["query: ccc"], ["query: a"]]
    assert batches == [1, 1, 1, 1] and cached == [True]  # what the server's metrics count


def test_the_same_query_in_flight_many_times_is_encoded_once() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        gate.wait(5)
        calls.append(list(texts))
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)

    batcher = QueryBatcher(encode, max_batch=16, wait_ms=50, cache_size=0)  # no cache
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher.embed, t) for t in ["x", "yy", "x", "x", "yy", "zzz"]]
        gate.set()
        results = [f.result(timeout=10).tolist() for f in futures]
    assert results == [[1.0], [2.0], [1.0], [1.0], [2.0], [3.0]]
    assert all(len(c) == len(set(c)) for c in calls)  # no text twice in one encode call
