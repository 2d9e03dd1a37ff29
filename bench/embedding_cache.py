"""Embeddings cached on disk for benchmark reruns: one .npy per (model, form, text list)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.embeddings.e5 import E5Embeddings


def cached(embedder: E5Embeddings, texts: list[str], form: str, cache_dir: Path) -> np.ndarray:
    """`form` is "query" or "passage"; vectors are what the pipeline would embed."""
    key = hashlib.sha256()
    key.update(f"{embedder.spec.model_id}|{embedder.spec.weights}|{form}".encode())
    for text in texts:
        key.update(b"\0" + text.encode("utf-8"))
    path = cache_dir / f"{key.hexdigest()[:24]}.npy"
    if path.exists():
        return np.load(path)
    shape = embedder.profile.query if form == "query" else embedder.profile.passage
    vectors = embedder.encode([shape(t) for t in texts])
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
