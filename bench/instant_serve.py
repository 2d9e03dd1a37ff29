"""`kbchat serve` whose query encoder is (nearly) free: for benchmarks only, never for production.

`bench/serve_bench.py --embedder instant` starts this instead of `python -m app.cli serve`, to
find what the request path costs when the encoder costs nothing (the ceiling the issue asks
for). Every text is encoded by the real model the first time it is seen (the warm-up does that
for the benchmark's questions and the small-talk exemplars) and answered from a table after,
so retrieval still finds what the real model would. The benchmark numbers its questions (so
the server's query cache cannot help); the table ignores that " (n)" at the end. Everything
else (the batcher, the chain, the store, the database, the middleware) is the production code.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.embeddings.e5 import E5Embeddings
from app.embeddings.onnx_encoder import OnnxE5Embeddings

_table: dict[str, np.ndarray] = {}
_lock = threading.Lock()


_NUMBER = re.compile(r" \(\d+\)$")


def _from_table(real_encode: Callable[[Any, list[str]], np.ndarray]) -> Callable[..., np.ndarray]:
    def encode(self: E5Embeddings, texts: list[str]) -> np.ndarray:
        keys = [_NUMBER.sub("", t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in _table]
        if missing:
            vectors = real_encode(self, missing)
            with _lock:
                _table.update(zip(missing, vectors, strict=True))
        if not texts:
            return real_encode(self, texts)
        return np.stack([_table[k] for k in keys])

    return encode


def main(argv: list[str]) -> Any:
    # Every encoder class that defines its own `encode` (the int8 one does: patching only the
    # base class left the int8 encoder running, and the "ceiling" measured it too).
    for cls in (E5Embeddings, OnnxE5Embeddings):
        cls.encode = _from_table(cls.encode)  # type: ignore[method-assign]
    from app.cli import main as kbchat

    sys.argv = ["kbchat", "serve", *argv]
    return kbchat()


if __name__ == "__main__":
    main(sys.argv[1:])
