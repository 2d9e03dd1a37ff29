"""Which retrieved passages are relevant enough to show: the raw cosine against the query's own
background, not against one fixed number.

E5 cosines crowd into 0.7-1.0, and how high they crowd depends on the query: a short generic
question ("What is the capital of Peru?") scores 0.75-0.78 against any text, while a specific
one about a passage that is not there scores lower. A fixed cut-off has to let the generic one
through to keep the gold passages of the specific ones. So each query gets its own cut-off:

    relevant  <=>  q·d >= min_score  and  q·d - q·r >= min_margin

where r is the mean passage vector of generic reference sentences in many languages
(app/data/reference_sentences.txt, from Tatoeba), so q·r is the query's similarity to the
average text, whatever the knowledge base holds. It depends only on the query and the model, so
the calibrated margin carries from one knowledge base to another (a background taken from the
knowledge base itself would turn a one-topic knowledge base's every answer away).

Measured per model on XQuAD dev questions, answerable against unanswerable
(bench/calibrate_relevance.py, docs/calibration.md); for multilingual-e5-small no margin beat
the raw cut-off, so the rule is opt-in (KBCHAT_RETRIEVAL_MIN_MARGIN) until one does.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.embeddings.e5 import E5Embeddings

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "data" / "reference_sentences.txt"

# Calibrated on XQuAD dev (bench/calibrate_relevance.py, docs/calibration.md). For
# multilingual-e5-small no margin earns its place: the one that costs 0.5% of gold passages
# (+0.005) turns away 14.9% instead of 11.9% of unanswerable questions, mostly Chinese ones, and
# drops 3.9% of the Chinese gold passages with them. So no model has one yet: the rule is opt-in
# (KBCHAT_RETRIEVAL_MIN_MARGIN) until a model or a background measures better.
CALIBRATED_MIN_MARGIN: dict[str, float] = {}

_REFERENCE: weakref.WeakKeyDictionary[E5Embeddings, dict[tuple[str, ...], np.ndarray]]
_REFERENCE = weakref.WeakKeyDictionary()
"""The reference vector per loaded model: embedded once per embedder, not once per chain."""


def default_min_margin(model_id: str) -> float | None:
    return CALIBRATED_MIN_MARGIN.get(model_id)


def load_reference_sentences(path: Path = REFERENCE_FILE) -> list[str]:
    """One sentence a line; lines starting with "#" are comments (the credit)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def reference_vector(
    embedder: E5Embeddings, sentences: list[str], cache_dir: Path | None = None
) -> np.ndarray:
    """Mean passage-form vector of the sentences (not normalised: q·r is the mean cosine).
    `cache_dir`: where their vectors are kept between processes (app.embeddings.vector_cache)."""
    from app.embeddings.vector_cache import cached_vectors

    known = _REFERENCE.setdefault(embedder, {})
    key = tuple(sentences)
    if key not in known:
        vectors = cached_vectors(
            embedder.encode_passages,
            sentences,
            spec=embedder.spec,
            form=embedder.profile.passage("{text}"),
            cache_dir=cache_dir,
            name="relevance",
        )
        known[key] = vectors.mean(axis=0)
    return known[key]


class Relevance:
    """The margin part of the cut-off; the retriever combines it with the fixed `min_score`."""

    def __init__(
        self,
        embedder: E5Embeddings,
        min_margin: float,
        sentences: list[str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.embedder = embedder
        self.cache_dir = cache_dir
        self.min_margin = min_margin
        self.sentences = sentences if sentences is not None else load_reference_sentences()

    def background(self, query_vector: np.ndarray) -> float:
        """q·r: the query's mean similarity to generic text."""
        return float(
            np.asarray(query_vector)
            @ reference_vector(self.embedder, self.sentences, self.cache_dir)
        )

    def cutoff(self, query_vector: np.ndarray) -> float:
        """The lowest raw cosine a passage needs for this query."""
        return round(self.background(query_vector) + self.min_margin, 4)
