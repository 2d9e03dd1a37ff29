"""E5 as a LangChain `Embeddings`: sentence-transformers underneath, the model's prefixes on top."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

from app.embeddings.profiles import PrefixProfile, make_profile
from app.embeddings.resolve import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from app.embeddings.batcher import QueryBatcher
    from app.settings import Settings


@dataclass(frozen=True)
class EmbeddingSpec:
    """How vectors were made; a collection stores it and refuses vectors made otherwise."""

    model_id: str
    weights: str
    scheme: str
    dimension: int
    max_tokens: int
    backend: str = "torch"  # recorded, not compared: int8 and fp32 are measured equivalent

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "kbchat_backend": self.backend,
            "kbchat_model": self.model_id,
            "kbchat_weights": self.weights,
            "kbchat_prefix": self.scheme,
            "kbchat_dim": self.dimension,
            "kbchat_max_tokens": self.max_tokens,
        }


class E5Embeddings(Embeddings):
    """Passages get the passage form, queries the query form; vectors are L2-normalised.

    The model loads on first use, so commands that embed nothing never pay for torch.
    """

    def __init__(
        self,
        model: ResolvedModel,
        profile: PrefixProfile,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        """`threads`: torch's intra-op threads once loaded (None: see `encoder_threads`)."""
        self.threads = threads
        self.resolved = model
        self.profile = profile
        self.device = None if device == "auto" else device
        self.batch_size = batch_size
        self._model: Any = None
        self._batcher: QueryBatcher | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:  # a preload thread may be loading it right now
            if self._model is None:
                self._model = self._load()
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(encoder_threads(self.threads))

        st = SentenceTransformer(str(self.resolved.path), device=self.device, local_files_only=True)
        if st.max_seq_length is None or st.max_seq_length > self.max_tokens:
            st.max_seq_length = self.max_tokens
        return st

    def preload(self) -> None:
        """Load the model in the background while the caller does other start-up work. Not a
        daemon thread: a process that ends while the load runs (a start-up error) waits for it,
        since native code killed half way through loading aborted the process at exit
        ("terminate called without an active exception")."""
        threading.Thread(target=lambda: self.model, name="e5-preload").start()

    @property
    def tokenizer(self) -> Tokenizer:
        """Exactly the pipeline the model is fed (transformers rebuilds XLM-R's whitespace
        handling as SentencePiece does, so the raw tokenizer.json could count differently)."""
        return self.model.tokenizer.backend_tokenizer

    @property
    def max_tokens(self) -> int:
        return self.resolved.max_tokens

    @cached_property
    def spec(self) -> EmbeddingSpec:
        dim = self.resolved.dimension or int(self.model.get_sentence_embedding_dimension())
        return EmbeddingSpec(
            self.resolved.model_id, self.resolved.weights, self.profile.scheme, dim, self.max_tokens
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.spec.dimension), np.float32)
        model = self.model
        batch_size = self.batch_size or (8 if str(model.device) == "cpu" else 64)
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def vectors_version(self) -> str:
        """Changes when the same model and backend would give other vectors (caches key on it)."""
        return ""

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self.encode([self.profile.passage(t) for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        if self._batcher is not None:
            return self._batcher.embed(self.profile.query(text)).tolist()
        return self.encode([self.profile.query(text)])[0].tolist()

    def batch_concurrent_queries(
        self, max_batch: int = 32, wait_ms: float = 2.0, **observers: Any
    ) -> None:
        """For servers: queries arriving together are embedded in one forward pass, recent ones
        not again. `observers`: QueryBatcher's on_batch / on_cached."""
        from app.embeddings.batcher import QueryBatcher

        self._batcher = QueryBatcher(self.encode, max_batch=max_batch, wait_ms=wait_ms, **observers)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def encoder_threads(configured: int | None) -> int:
    """The local encoder's intra-op threads: as configured, else one core fewer than usable (at
    least one). The rest of the process needs a core (a server's request threads hold the GIL,
    ingest parses files), and intra-op threads that wait for a busy core spin: with 2 threads on
    a busy 2-core machine one query took 20-60x longer than with 1."""
    return configured if configured is not None else max(1, usable_cores() - 1)


def build_embeddings(settings: Settings) -> E5Embeddings:
    """Resolve the configured model (downloading or materialising it if needed) and wrap it; with
    KBCHAT_EMBEDDING_URL set, the vectors come from that server (app/embeddings/remote.py)."""
    emb = settings.embedding
    resolved = resolve_model(emb.model, settings.models_dir, emb.hub_timeout)
    profile = make_profile(resolved.model_id, settings.prompts_dir, emb.prefix_scheme)
    if emb.url:  # vectors from a server; the local folder gives only tokenizer and dimension
        from app.embeddings.remote import build_remote

        return build_remote(
            resolved,
            profile,
            url=emb.url,
            api_key=emb.api_key.get_secret_value() if emb.api_key else None,
            remote_model=emb.remote_model,
            weights=emb.remote_weights,
            prefixes=emb.remote_prefixes,
            batch_size=emb.batch_size,
            timeout=emb.remote_timeout,
            retries=emb.remote_retries,
        )
    backend = choose_backend(emb.backend, emb.device)
    # auto tries the next int8 copy when one cannot be made (a model CTranslate2 cannot convert)
    tried = INT8_BACKENDS[INT8_BACKENDS.index(backend) :] if backend in INT8_BACKENDS else ()
    for candidate in tried if emb.backend == "auto" else tried[:1]:
        kind = _int8_encoder(candidate)
        if _int8_usable(kind, settings.models_dir, resolved, asked=emb.backend == candidate):
            return kind(
                resolved,
                profile,
                settings.models_dir,
                batch_size=emb.batch_size,
                threads=emb.threads,
            )
    return E5Embeddings(
        resolved, profile, device=emb.device, batch_size=emb.batch_size, threads=emb.threads
    )


INT8_BACKENDS = ("ct2-int8", "onnx-int8")  # auto's order of preference on a CPU


def _int8_encoder(backend: str) -> Any:
    """The encoder class of an int8 backend (imported here: they import this module)."""
    from app.embeddings.ct2_encoder import Ct2E5Embeddings
    from app.embeddings.onnx_encoder import OnnxE5Embeddings

    return {kind.backend: kind for kind in (Ct2E5Embeddings, OnnxE5Embeddings)}[backend]


def _int8_usable(kind: Any, models_dir: Path, resolved: ResolvedModel, *, asked: bool) -> bool:
    """Make (once) and check the int8 copy `kind` runs. Chosen by `auto`, a copy that cannot be
    made or misses the quality bar falls back with a warning; asked for, it is used anyway (with
    the warning) or its error is the user's to see."""
    import logging

    from app.embeddings.onnx_export import MIN_COSINE, OnnxExportError

    log = logging.getLogger(__name__)
    try:
        _, info = kind.prepare(models_dir, resolved)
    except OnnxExportError as exc:
        if asked:
            raise
        log.warning("%s; falling back to the next encoder (torch last)", exc)
        return False
    cosine = float(info.get("min_cosine_vs_fp32", 0.0))
    if cosine < MIN_COSINE:
        log.warning(
            "the int8 copy of %s reaches cosine %.4f against fp32 (bar %.2f)%s",
            resolved.model_id,
            cosine,
            MIN_COSINE,
            "" if not asked else f"; used because KBCHAT_EMBEDDING_BACKEND={kind.backend}",
        )
        return asked
    return True


def choose_backend(
    backend: str, device: str, *, nvidia: bool | None = None, ct2: bool | None = None
) -> str:
    """auto: torch where a GPU is asked for or present (an NVIDIA driver), else int8 on CPU:
    CTranslate2's where it is installed (twice as fast as the ONNX copy for a question, within
    the quality bar: docs/performance.md), else the ONNX copy; decided without importing torch,
    which is what the int8 path saves."""
    if backend != "auto":
        return backend
    if nvidia is None:
        nvidia = Path("/proc/driver/nvidia").exists()
    if device in {"cuda", "mps"} or (device == "auto" and nvidia):
        return "torch"
    if ct2 is None:
        from importlib.util import find_spec

        ct2 = find_spec("ctranslate2") is not None
    return "ct2-int8" if ct2 else "onnx-int8"
