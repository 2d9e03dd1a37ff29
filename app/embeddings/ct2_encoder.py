"""E5 on CTranslate2 with int8 weights: the default CPU encoder (app/embeddings/ct2_export.py
says why). Serving imports neither torch nor transformers; tokenising, truncation, threads and
pooling are the ONNX encoder's (app/embeddings/onnx_encoder.py `Int8Runner`).

Mixing rule: as for the ONNX copy, vectors of one model, weights and prefix scheme from any of
the backends are interchangeable (measured cosine ≥ 0.998 against fp32 on the probe sentences;
recall within 0.5 point); the collection records the backends that wrote it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from app.embeddings.e5 import encoder_threads, usable_cores
from app.embeddings.onnx_encoder import Int8Runner, OnnxE5Embeddings
from app.embeddings.resolve import ResolvedModel

BACKEND = "ct2-int8"
ISA_VARIABLE = "CT2_FORCE_CPU_ISA"  # CTranslate2's own switch, read when its first model loads
AVX512 = frozenset({"avx512f", "avx512bw"})  # what CTranslate2's AVX512 kernels need


def cpu_isa() -> str:
    """The instruction set of CTranslate2's own kernels (layer norms, softmax, GELU, the
    activations' quantisation): AVX512 where the CPU has it. CTranslate2 picks AVX2 on such a
    CPU unless told; AVX512 embeds a question in 3.4-3.5 ms instead of 3.8-4.0 here
    (docs/performance.md). A value the user set is kept."""
    chosen = os.environ.get(ISA_VARIABLE)
    if chosen:
        return chosen
    if cpu_flags() >= AVX512:
        os.environ[ISA_VARIABLE] = "AVX512"
        return "AVX512"
    return "default"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere: the engine's choice)."""
    try:
        with open(path, encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


class Ct2Runner(Int8Runner):
    """One CTranslate2 encoder with a replica per worker thread; `encode` takes prefixed texts."""

    def __init__(self, folder: Path, max_tokens: int, *, threads: int | None = None) -> None:
        import ctranslate2

        cpu_isa()
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

    backend = BACKEND

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # now, on the thread that builds the encoder: setting a variable while another thread
        # reads the environment (the model's background load) is not safe in C
        cpu_isa()

    @staticmethod
    def prepare(models_dir: Path, model: ResolvedModel) -> tuple[Path, dict[str, Any]]:
        """The copy this encoder runs, made once if missing (app/embeddings/ct2_export.py)."""
        from app.embeddings.ct2_export import prepare_ct2

        return prepare_ct2(models_dir, model)

    def _runner(self, folder: Path) -> Int8Runner:
        return Ct2Runner(folder, self.max_tokens, threads=self.threads)

    @property
    def vectors_version(self) -> str:
        from app.embeddings.ct2_export import FORMAT, engine_version

        # the kernels' instruction set moves vectors slightly (cosine ≥ 0.998): cached apart
        return f"ct2 format {FORMAT}, ctranslate2 {engine_version()}, {cpu_isa()}"
