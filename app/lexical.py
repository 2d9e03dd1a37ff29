"""A small lexical bonus for the over-fetched candidates: BM25 over the embedding model's tokens.

Dense vectors blur exact names and numbers ("1847", "Tesla") that a reader types on purpose; BM25
rewards them. It scores only the candidates the vector search returned, so it works the same for
the embedded store and a Chroma server and needs no second index. Tokens come from the model's own
SentencePiece tokenizer, which splits every script the model knows (Thai and Chinese included)
without a word segmenter. The scores are divided by the query's best, so `weight` means the same
for every query: the most a passage can gain.

The BM25 formula is Lucene's, as in the bm25s library (tests/test_lexical.py checks the two agree),
computed here for the query's terms only: a library index is built from scratch for every query's
50 candidates (35 ms a question measured, most of it counting), while the same chunks come back
for many questions, so their term counts are cached and a question costs well under a millisecond.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

K1, B = 1.5, 0.75  # Lucene's and bm25s's defaults


class LexicalBonus:
    def __init__(self, tokenizer: Tokenizer, weight: float, *, cache_size: int = 4096) -> None:
        self.tokenizer = tokenizer
        self.weight = weight
        self._counts = lru_cache(maxsize=cache_size)(self._count)

    def tokens(self, text: str) -> list[str]:
        """Lower-cased SentencePiece pieces, without bare word marks and punctuation."""
        pieces = self.tokenizer.encode(text.lower(), add_special_tokens=False).tokens
        return [p for p in pieces if _has_word_character(p.lstrip("▁"))]

    def _count(self, text: str) -> tuple[Counter[str], int]:
        tokens = self.tokens(text)
        return Counter(tokens), len(tokens)

    def bm25(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Lucene BM25 of each text for `query`, with the texts as the whole corpus."""
        counts = [self._counts(t) for t in texts]
        n = len(counts)
        average = sum(length for _, length in counts) / n if n else 0.0
        scores = np.zeros(n)
        if not average:
            return scores
        norms = np.array([K1 * (1 - B + B * length / average) for _, length in counts])
        for term in set(self.tokens(query)):
            tf = np.array([c.get(term, 0) for c, _ in counts], dtype=np.float64)
            df = int((tf > 0).sum())
            if df:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                scores += idf * tf / (tf + norms)
        return scores

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """weight * BM25(query, text) / best BM25 among `texts`; zeros when nothing matches."""
        if not texts or self.weight == 0:
            return np.zeros(len(texts))
        raw = self.bm25(query, texts)
        best = float(raw.max(initial=0.0))
        return self.weight * raw / best if best > 0 else np.zeros(len(texts))


def _has_word_character(piece: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in piece)
