"""Vectors of fixed text lists (the small-talk and handoff exemplars, the relevance reference
sentences) kept on disk under the data dir, so a new process does not embed them again when its
first chat needs them (a few hundred texts: seconds on a small CPU, paid by that chat).

A file is keyed by everything that changes the vectors: the embedding spec (model, weights,
prefix scheme, dimension), the form the texts are given to the model in (the prefix template)
and the exact text list, in order. The key is also stored inside the file and checked on load,
with the array's shape, so a file that is corrupt, cut short, or made for anything else is
ignored and written again. As with the query-correction statistics, the int8 and fp32 encoders
share files: their vectors are measured interchangeable (docs/performance.md, mixing rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.embeddings.e5 import EmbeddingSpec

log = logging.getLogger(__name__)
_SPEC_FIELDS = ("model_id", "weights", "scheme", "dimension")


def cache_key(spec: EmbeddingSpec, form: str, texts: Sequence[str]) -> str:
    """sha256 over the spec's vector-changing fields, the form and every text (in order)."""
    head = json.dumps(
        {"spec": {f: getattr(spec, f) for f in _SPEC_FIELDS}, "form": form}, sort_keys=True
    )
    digest = hashlib.sha256(head.encode())
    for text in texts:  # length-prefixed: no two lists give the same byte stream
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def cached_vectors(
    encode: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    *,
    spec: EmbeddingSpec,
    form: str,
    cache_dir: Path | None,
    name: str,
) -> np.ndarray:
    """`encode(texts)`, read from `cache_dir` when an earlier process wrote it (None: no cache).

    `form`: how `encode` shapes a text for the model (e.g. the query prefix template); `name`
    only makes the file recognisable (small-talk, handoff, relevance)."""
    texts = list(texts)
    if cache_dir is None:
        return encode(texts)
    key = cache_key(spec, form, texts)
    path = cache_dir / f"{name}-{key[:24]}.npz"
    expected = (len(texts), spec.dimension)
    try:
        with np.load(path, allow_pickle=False) as stored:
            vectors = stored["vectors"]
            if (
                str(stored["key"]) == key
                and vectors.shape == expected
                and np.isfinite(vectors).all()
            ):
                return np.asarray(vectors, dtype=np.float32)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        log.warning("ignoring an unreadable vector cache file %s", path)
    vectors = np.asarray(encode(texts), dtype=np.float32)
    try:
        _write(path, key, vectors)
    except OSError:  # a read-only data dir: the vectors still serve this process
        log.warning("could not write the vector cache file %s", path, exc_info=True)
    return vectors


def _write(path: Path, key: str, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file of its own, then a rename: replicas sharing the data dir may write the same
    # file at the same moment, and a reader must never see half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.asarray(key), vectors=vectors)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
