"""The local encoder's intra-op threads leave a core to the rest of the process: on a 2-core
machine torch with 2 threads spin-waits for a core the server's request threads hold, and a
query took 20-60x longer than with 1; KBCHAT_EMBEDDING_THREADS sets it."""

from __future__ import annotations

from typing import Any

import pytest

from app.embeddings import e5 as e5_module
from app.embeddings.e5 import E5Embeddings, encoder_threads


def test_unset_leaves_one_core_to_the_rest_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_module, "usable_cores", lambda: 2)
    assert encoder_threads(None) == 1
    monkeypatch.setattr(e5_module, "usable_cores", lambda: 8)
    assert encoder_threads(None) == 7
    monkeypatch.setattr(e5_module, "usable_cores", lambda: 1)
    assert encoder_threads(None) == 1
    assert encoder_threads(3) == 3


def test_the_setting_is_validated_and_reaches_the_embedder(tmp_path: Any) -> None:
    from pydantic import ValidationError

    from app.settings import load_settings

    assert load_settings(data_dir=tmp_path).embedding.threads is None
    assert load_settings(data_dir=tmp_path, embedding={"threads": 2}).embedding.threads == 2
    for bad in (0, -1, 10_000):
        with pytest.raises(ValidationError):
            load_settings(data_dir=tmp_path, embedding={"threads": bad})


def test_loading_the_model_sets_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import sentence_transformers
    import torch

    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)

    class Loaded:
        max_seq_length = 512

        def __init__(self, *_: Any, **__: Any) -> None:
            pass

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Loaded)
    resolved: Any = type("R", (), {"path": "x", "max_tokens": 512})()
    embedder = E5Embeddings(resolved, profile=None, device="cpu", threads=3)  # type: ignore[arg-type]
    assert isinstance(embedder.model, Loaded)
    assert set_to == [3]
