"""A small lexical bonus for the over-fetched candidates: BM25 over the embedding model's tokens.

Dense vectors blur exact names and numbers ("1847", "Tesla") that a reader types on purpose; BM25
rewards them. It scores only the candidates the vector search returned, so it works the same for
the embedded store and a Chroma server and needs no second index. Tokens come from the model's own
SentencePiece tokenizer, which splits every script the model knows (Thai and Chinese included)
without a word segmenter. The scores are divided by the query's best, so `weight` means the same
for every query: the most a passage can gain.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class LexicalBonus:
    def __init__(self, tokenizer: Tokenizer, weight: float) -> None:
        self.tokenizer = tokenizer
        self.weight = weight

    def tokens(self, text: str) -> list[str]:
        """Lower-cased SentencePiece pieces, without bare word marks and punctuation."""
        pieces = self.tokenizer.encode(text.lower(), add_special_tokens=False).tokens
        return [p for p in pieces if _has_word_character(p.lstrip("▁"))]

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """weight * BM25(query, text) / best BM25 among `texts`; zeros when nothing matches."""
        import bm25s

        if not texts or self.weight == 0:
            return np.zeros(len(texts))
        index = bm25s.BM25()
        index.index([self.tokens(t) or ["▁"] for t in texts], show_progress=False)
        raw = np.asarray(index.get_scores(self.tokens(query)), dtype=np.float64)
        best = float(raw.max(initial=0.0))
        return self.weight * raw / best if best > 0 else np.zeros(len(texts))


def _has_word_character(piece: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in piece)
