"""`kbchat serve` whose query encoder is (nearly) free: for benchmarks only, never for production.

`bench/serve_bench.py --embedder instant` starts this instead of `python -m app.cli serve`, to
find what the request path costs when the encoder costs nothing (the ceiling the issue asks
for). Every text is encoded by the real model the first time it is seen (the warm-up does that
for the benchmark's questions and the small-talk exemplars) and answered from a table after,
so retrieval still finds exactly what the real model would. Everything else (the batcher, the
chain, the store, the database, the middleware) is the production code, unchanged.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.embeddings.e5 import E5Embeddings

_real_encode = E5Embeddings.encode
_table: dict[str, np.ndarray] = {}
_lock = threading.Lock()


def _encode_from_table(self: E5Embeddings, texts: list[str]) -> np.ndarray:
    missing = [t for t in dict.fromkeys(texts) if t not in _table]
    if missing:
        vectors = _real_encode(self, missing)
        with _lock:
            _table.update(zip(missing, vectors, strict=True))
    if not texts:
        return _real_encode(self, texts)
    return np.stack([_table[t] for t in texts])


def main(argv: list[str]) -> Any:
    E5Embeddings.encode = _encode_from_table  # type: ignore[method-assign]
    from app.cli import main as kbchat

    sys.argv = ["kbchat", "serve", *argv]
    return kbchat()


if __name__ == "__main__":
    main(sys.argv[1:])
