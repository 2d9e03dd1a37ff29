"""E5 on onnxruntime with int8 weights: the CPU encoder, faster than fp32 torch for questions and
passages alike (docs/performance.md).

Serving with it imports neither torch nor transformers: the tokenizer is the `tokenizers` file
saved at export (app/embeddings/onnx_export.py), pooling is a mean over the text's tokens in
numpy (one text per run: no padding to mask), vectors are L2-normalised as sentence-transformers
does.

Mixing rule (measured, docs/performance.md): int8 and fp32 vectors of the same model, weights and
prefix scheme are interchangeable: cosine between them ≥ 0.99 on every probe sentence, and
recall@1 with int8 queries over fp32 passages (and the reverse) within 0.5 point of either alone.
So a collection embedded by one backend is searched and synced by the other without re-embedding;
the collection records the backends that wrote it (`kbchat_backend`), and the model, weights and
prefix scheme still must match exactly.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.embeddings.e5 import E5Embeddings, EmbeddingSpec, encoder_threads, usable_cores
from app.embeddings.profiles import PrefixProfile
from app.embeddings.resolve import ResolvedModel

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)
BACKEND = "onnx-int8"


class Int8Runner:
    """What the int8 engines share: the tokenizer saved with the copy, truncation as
    sentence-transformers does it, one text per run on a pool of threads, mean pooling; the
    engine itself is `_hidden` (token vectors of one text)."""

    def __init__(self, folder: Path, max_tokens: int, workers: int) -> None:
        from tokenizers import Tokenizer

        self.workers = max(1, workers)
        self._executor: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()  # counting and chunking see every token
        self.max_content = max_tokens - self.tokenizer.num_special_tokens_to_add(False)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One text per run: no padding, and a vector never depends on its company (the ONNX
        copy quantises activations with one scale per tensor); on this CPU one-text runs are
        also the fastest (22 passages/s against 15 in batches of 8). Several texts run on
        `workers` threads at once (both engines run concurrently and release the GIL)."""
        if len(texts) == 1:  # a question: encode_batch's thread pool costs more than it saves
            encodings = [self.tokenizer.encode(texts[0], add_special_tokens=False)]
        else:
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = [self._ids(e) for e in encodings]
        if not ids:
            return np.zeros((0, 0), np.float32)
        if self.workers > 1 and len(ids) > 1:
            rows = list(self._pool().map(self._forward, ids))
        else:
            rows = [self._forward(row) for row in ids]
        return np.stack(rows)

    def _pool(self) -> ThreadPoolExecutor:
        """Made once: a server's query batches come many times a second."""
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="kbchat-int8")
            return self._executor

    def _ids(self, encoding: Any) -> list[int]:
        """Truncated as sentence-transformers does: the text's tokens first, then the specials
        (one tokenizer object serves counting and encoding, its 250k-piece vocabulary loads
        once)."""
        encoding.truncate(self.max_content)
        return list(self.tokenizer.post_process(encoding, None, add_special_tokens=True).ids)

    def _forward(self, row: list[int]) -> np.ndarray:
        pooled = self._hidden(row).mean(axis=0)  # every token is real: no padding
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)

    def _hidden(self, row: list[int]) -> np.ndarray:
        raise NotImplementedError


class OnnxRunner(Int8Runner):
    """One onnxruntime session of the ONNX copy; `encode` takes prefixed texts."""

    def __init__(self, folder: Path, max_tokens: int, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = encoder_threads(threads)
        super().__init__(folder, max_tokens, usable_cores() // options.intra_op_num_threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.feeds = {i.name for i in self.session.get_inputs()}

    def _hidden(self, row: list[int]) -> np.ndarray:
        input_ids = np.array([row], np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.feeds})[0]
        return np.asarray(hidden[0])


class OnnxE5Embeddings(E5Embeddings):
    """The E5Embeddings interface on the int8 ONNX copy; it is made on first use if missing."""

    def __init__(
        self,
        model: ResolvedModel,
        profile: PrefixProfile,
        models_dir: Path,
        *,
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(model, profile, device="cpu", batch_size=batch_size, threads=threads)
        self.models_dir = models_dir
        self.info: dict[str, Any] = {}

    backend = BACKEND  # recorded in the spec (`kbchat_backend`) and chosen by this name

    @staticmethod
    def prepare(models_dir: Path, model: ResolvedModel) -> tuple[Path, dict[str, Any]]:
        """The copy this encoder runs, made once if missing (app/embeddings/onnx_export.py)."""
        from app.embeddings.onnx_export import prepare_onnx

        return prepare_onnx(models_dir, model)

    def _runner(self, folder: Path) -> Int8Runner:
        return OnnxRunner(folder, self.max_tokens, threads=self.threads)

    def _load(self) -> Int8Runner:
        folder, self.info = self.prepare(self.models_dir, self.resolved)
        return self._runner(folder)

    @property
    def tokenizer(self) -> Tokenizer:
        runner: Int8Runner = self.model
        return runner.tokenizer

    @cached_property
    def spec(self) -> EmbeddingSpec:
        dim = self.resolved.dimension
        if dim is None:
            _ = self.model  # the export records the dimension
            dim = int(self.info["dimension"])
        return EmbeddingSpec(
            self.resolved.model_id,
            self.resolved.weights,
            self.profile.scheme,
            dim,
            self.max_tokens,
            backend=self.backend,
        )

    @property
    def vectors_version(self) -> str:
        from app.embeddings.onnx_export import FORMAT

        return f"onnx format {FORMAT}"  # a new quantisation scheme gives other vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.spec.dimension), np.float32)
        runner: Int8Runner = self.model
        return runner.encode(list(texts))
