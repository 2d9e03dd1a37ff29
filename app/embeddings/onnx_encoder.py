"""E5 on onnxruntime with int8 weights: the CPU encoder, about three times faster than fp32 torch.

Serving with it imports neither torch nor transformers: the tokenizer is the `tokenizers` file
saved at export (app/embeddings/onnx_export.py), pooling is a mean over the attention mask in
numpy, vectors are L2-normalised as sentence-transformers does.

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
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.embeddings.e5 import E5Embeddings, EmbeddingSpec, encoder_threads
from app.embeddings.profiles import PrefixProfile
from app.embeddings.resolve import ResolvedModel

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)
BACKEND = "onnx-int8"
# From this many tokens a passage goes to torch under `auto`: on the 2-core machine the int8
# copy embeds a 15-token question in ~10 ms against torch's 24, and a 300-token paragraph in
# ~220 ms against torch's ~100 (docs/performance.md); 64 lies between, not tuned.
LONG_TOKENS = 64


class OnnxRunner:
    """One onnxruntime session and its tokenizer; `encode` takes prefixed texts."""

    def __init__(
        self, folder: Path, max_tokens: int, *, pad_id: int, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = encoder_threads(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.feeds = {i.name for i in self.session.get_inputs()}
        self.pad_id = pad_id
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()  # counting and chunking see every token
        self.max_content = max_tokens - self.tokenizer.num_special_tokens_to_add(False)

    def encode(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Texts are sorted by length and batched, so padding stays small; order is kept."""
        ids = [self._ids(e) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            vectors = self._forward([ids[i] for i in part])
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), np.float32)
            out[part] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)

    def _ids(self, encoding: Any) -> list[int]:
        """Truncated as sentence-transformers does: the text's tokens first, then the specials
        (one tokenizer object serves counting and encoding, its 250k-piece vocabulary loads
        once)."""
        encoding.truncate(self.max_content)
        return list(self.tokenizer.post_process(encoding, None, add_special_tokens=True).ids)

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), self.pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.feeds})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


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
        passages_by_torch: bool = False,
    ) -> None:
        """`passages_by_torch`: passages go to fp32 torch, loaded on first use (on a CPU without
        fast int8 GEMM for long inputs, torch embeds passages about twice as fast, while int8
        embeds a question 2.4 times as fast as torch: docs/performance.md)."""
        super().__init__(model, profile, device="cpu", batch_size=batch_size, threads=threads)
        self.models_dir = models_dir
        self.info: dict[str, Any] = {}
        self.passages_by_torch = passages_by_torch
        self._torch: E5Embeddings | None = None
        self._torch_lock = threading.Lock()

    def _load(self) -> OnnxRunner:
        from app.embeddings.onnx_export import prepare_onnx

        folder, self.info = prepare_onnx(self.models_dir, self.resolved)
        return OnnxRunner(
            folder, self.max_tokens, pad_id=int(self.info.get("pad_id", 1)), threads=self.threads
        )

    @property
    def tokenizer(self) -> Tokenizer:
        runner: OnnxRunner = self.model
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
            backend=f"{BACKEND}+torch" if self.passages_by_torch else BACKEND,  # stored vectors
        )

    @property
    def query_backend(self) -> str:
        return BACKEND  # questions are always embedded by the int8 copy

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """With `passages_by_torch`, only texts of LONG_TOKENS or more go to torch: short ones
        (sentence vectors, extractive answers' sentences, reference sentences) are faster on
        the int8 copy, and a server answering questions never loads torch for them."""
        if not self.passages_by_torch or not texts:
            return super().encode_passages(texts)
        prefixed = [self.profile.passage(t) for t in texts]
        runner: OnnxRunner = self.model
        lengths = [len(e.ids) for e in runner.tokenizer.encode_batch(prefixed)]
        long = [i for i, n in enumerate(lengths) if n >= LONG_TOKENS]
        out = np.zeros((len(texts), self.spec.dimension), np.float32)
        short = [i for i, n in enumerate(lengths) if n < LONG_TOKENS]
        if short:
            out[short] = self.encode([prefixed[i] for i in short])
        if long:
            out[long] = self._fp32().encode_passages([texts[i] for i in long])
        return out

    def _fp32(self) -> E5Embeddings:
        with self._torch_lock:
            if self._torch is None:
                self._torch = E5Embeddings(
                    self.resolved,
                    self.profile,
                    device="cpu",
                    batch_size=self.batch_size,
                    threads=self.threads,
                )
            return self._torch

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.spec.dimension), np.float32)
        runner: OnnxRunner = self.model
        return runner.encode(list(texts), batch_size=self.batch_size or 16)
