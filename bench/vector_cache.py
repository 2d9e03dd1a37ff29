"""An on-disk cache of embeddings for benchmarks, so a rerun embeds nothing it embedded before.

Wraps an `E5Embeddings`: `encode` (queries and, through `encode_passages`, passages) looks every
text up in one SQLite file keyed by the model's embedding spec and the exact text, and embeds only
the misses. Everything else is passed through, so the wrapper can be handed to `ingest_folder`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np


class DiskCachedEmbedder:
    def __init__(self, embedder: Any, path: Path) -> None:
        self._inner = embedder
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path))
        self._db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec BLOB)")
        self._salt = repr(embedder.spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self._salt}\0{text}".encode()).hexdigest()

    def encode(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for k, blob in self._db.execute(f"SELECT k, vec FROM v WHERE k IN ({marks})", part):
                found[k] = np.frombuffer(blob, dtype=np.float32)
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        for start in range(0, len(todo), 64):  # commit as we go: an interrupted run keeps its work
            part = todo[start : start + 64]
            vectors = self._inner.encode(part)
            for t, v in zip(part, vectors, strict=True):
                found[self._key(t)] = np.asarray(v, dtype=np.float32)
            rows = [(self._key(t), found[self._key(t)].tobytes()) for t in part]
            self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)", rows)
            self._db.commit()
        if not texts:
            return np.zeros((0, self._inner.spec.dimension), np.float32)
        return np.stack([found[k] for k in keys])

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self.encode([self._inner.profile.passage(t) for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([self._inner.profile.query(text)])[0].tolist()
