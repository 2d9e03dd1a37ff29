"""E5 on CTranslate2 with int8 weights: the default CPU encoder (app/embeddings/ct2_export.py
says why). Serving imports neither torch nor transformers; tokenising, truncation, threads and
pooling are the ONNX encoder's (app/embeddings/onnx_encoder.py `Int8Runner`).

Mixing rule: as for the ONNX copy, vectors of one model, weights and prefix scheme from any of
the backends are interchangeable (measured cosine ≥ 0.998 against fp32 on the probe sentences;
recall within 0.5 point); the collection records the backends that wrote it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np

from app.embeddings.e5 import EmbeddingSpec, encoder_threads, usable_cores
from app.embeddings.onnx_encoder import Int8Runner, OnnxE5Embeddings

BACKEND = "ct2-int8"


class Ct2Runner(Int8Runner):
    """One CTranslate2 encoder with a replica per worker thread; `encode` takes prefixed texts."""

    def __init__(self, folder: Path, max_tokens: int, *, threads: int | None = None) -> None:
        import ctranslate2

        intra = encoder_threads(threads)
        super().__init__(folder, max_tokens, usable_cores() // intra)
        self.engine = ctranslate2.Encoder(
            str(folder),
            device="cpu",
            compute_type="int8",
            intra_threads=intra,
            inter_threads=self.workers,
        )

    def _hidden(self, row: list[int]) -> np.ndarray:
        out = self.engine.forward_batch([row])
        return np.asarray(out.last_hidden_state)[0]


class Ct2E5Embeddings(OnnxE5Embeddings):
    """The E5Embeddings interface on the CTranslate2 copy; it is made on first use if missing."""

    def _load(self) -> Ct2Runner:
        from app.embeddings.ct2_export import prepare_ct2

        folder, self.info = prepare_ct2(self.models_dir, self.resolved)
        return Ct2Runner(folder, self.max_tokens, threads=self.threads)

    @cached_property
    def spec(self) -> EmbeddingSpec:
        return replace(super().spec, backend=BACKEND)

    @property
    def vectors_version(self) -> str:
        from app.embeddings.ct2_export import FORMAT, engine_version

        return f"ct2 format {FORMAT}, ctranslate2 {engine_version()}"
