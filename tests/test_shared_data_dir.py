"""Replicas share one data folder: files kbchat writes there must survive two processes writing
the same one at the same moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.embeddings.e5 import EmbeddingSpec
from app.query_correction import QueryCorrection, spec_folder

SPEC = EmbeddingSpec("test/model-a", "w1", "e5", 4, 512)
SENTENCES = {"de": [f"Satz {i}" for i in range(6)]}


class Encoder:
    spec = SPEC

    class profile:  # the encoder's prefix profile, as an attribute
        @staticmethod
        def query(text: str) -> str:
            return f"query: {text}"

        @staticmethod
        def passage(text: str) -> str:
            return f"passage: {text}"

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.array([[1.0, 0.1 * (i % 3), 0.5, 0.0] for i in range(len(texts))])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_two_replicas_caching_one_language_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica B writes and renames its copy of the statistics while replica A is writing its
    own: A must not find its file taken away (it did: both used one temp name)."""
    a = QueryCorrection(Encoder(), tmp_path, sentences=SENTENCES)
    b = QueryCorrection(Encoder(), tmp_path, sentences=SENTENCES)
    save = np.savez
    calls: list[Any] = []

    def interleaved(*args: Any, **kwargs: Any) -> None:
        save(*args, **kwargs)
        calls.append(args[0])
        if len(calls) == 1:  # A has written; B now does all of its work before A renames
            assert b.reference("de") is not None

    monkeypatch.setattr("app.query_correction.np.savez", interleaved)
    assert a.reference("de") is not None
    assert len(calls) == 2
    cached = tmp_path / spec_folder(SPEC) / "de.npz"
    assert cached.is_file()
    assert [p.name for p in cached.parent.iterdir()] == ["de.npz"]  # no temp file left behind
    fresh = QueryCorrection(Encoder(), tmp_path, sentences=SENTENCES).reference("de")
    assert fresh is not None
    assert np.allclose(fresh.mean, a.reference("de").mean)  # type: ignore[union-attr]
