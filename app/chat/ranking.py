"""How an over-fetched candidate set is ordered: one function for chat, search and `kbchat eval`.

The vector search returns the nearest chunks by raw cosine q·d. Each lever then re-scores them:
- query correction (app/query_correction.py): q is replaced by its language-corrected q', so the
  score is q'·d (needs the candidates' vectors);
- language centring (app/language_stats.py): minus q'·(m'_lang(d) - m_all);
- sentence vectors (ingestion/sentences.py): the chunk's score becomes (q'·d + w * max over its
  sentences of q'·s) / (1 + w), so the sentence that answers counts, not only the chunk's average;
- lexical bonus (app/lexical.py): plus weight * BM25 / best BM25 over the candidates.
The relevance cut-off and `Source.score` stay on the raw cosine (app/chat/retriever.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.embeddings.e5 import E5Embeddings
    from app.language_stats import LanguageMeans
    from app.lexical import LexicalBonus
    from app.query_correction import QueryCorrection
    from app.settings import Settings


@dataclass(frozen=True)
class Ranker:
    """The query-side levers; centring means come per call (they change with the collection)."""

    correction: QueryCorrection | None = None
    lexical: LexicalBonus | None = None
    references: QueryCorrection | None = None  # the generic-sentence prior of centring
    sentence_weight: float = 0.0

    @property
    def needs_vectors(self) -> bool:
        return self.correction is not None

    def scores(
        self,
        query: str,
        vector: np.ndarray,
        language: str | None,
        *,
        raw: Sequence[float] | np.ndarray,
        texts: Sequence[str],
        languages: Sequence[str],
        vectors: np.ndarray | None = None,
        means: LanguageMeans | None = None,
        sentences: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """The ranking score of each candidate (higher first).

        `sentences`: each candidate's sentence vectors (None: it has none, e.g. a one-sentence
        chunk, or one ingested before they existed; its own cosine stands in for its best)."""
        q = np.asarray(vector, dtype=np.float64)
        scores = np.asarray(raw, dtype=np.float64)
        if self.correction is not None and vectors is not None and len(vectors):
            # The knowledge base's languages: the collection's chunk counts (recorded for
            # centring), else the candidates' own.
            target = dict(means.counts) if means is not None else Counter(languages)
            q = self.correction.correct(q, language, target)
            scores = np.asarray(vectors, dtype=np.float64) @ q
        passage = scores
        if self.sentence_weight > 0 and sentences is not None and len(scores):
            best = best_sentences(q, sentences, passage)
            scores = (passage + self.sentence_weight * best) / (1 + self.sentence_weight)
        if means is not None and len(scores):
            # Centring's leave-one-out needs each chunk's own cosine, not the blended score.
            prior = self.references.passage_offsets(means.counts) if self.references else None
            scores = scores - means.offsets(q, languages, passage, prior or None)
        if self.lexical is not None and len(scores):
            scores = scores + self.lexical.scores(query, texts)
        return scores


def best_sentences(
    query: np.ndarray, sentences: Sequence[np.ndarray | None], own: np.ndarray
) -> np.ndarray:
    """Each candidate's best sentence score for `query`; its `own` score where it has none."""
    q = np.asarray(query, dtype=np.float64)
    return np.array(
        [
            float(np.max(s @ q)) if s is not None and len(s) else float(score)
            for s, score in zip(sentences, own, strict=True)
        ]
    )


def build_ranker(settings: Settings, embedder: E5Embeddings) -> Ranker | None:
    """The levers the settings turn on (None: none of them)."""
    retrieval = settings.retrieval
    correction = lexical = references = None
    # An embedder without batch query encoding (the tests' fakes) cannot make the statistics.
    can_encode = callable(getattr(embedder, "encode", None))
    wants_references = retrieval.query_correction != "off" or retrieval.language_centring
    if wants_references and can_encode:
        from app.query_correction import QueryCorrection

        references = QueryCorrection(
            embedder,
            settings.data_dir / "language_reference",
            mode="shift" if retrieval.query_correction == "off" else retrieval.query_correction,
            strength=retrieval.query_correction_strength,
        )
        if retrieval.query_correction != "off":
            correction = references
        if not retrieval.language_centring:
            references = None
    if retrieval.lexical_weight > 0:
        from app.lexical import LexicalBonus

        lexical = LexicalBonus(embedder.tokenizer, retrieval.lexical_weight)
    sentence_weight = retrieval.sentence_weight
    if correction is None and lexical is None and references is None and not sentence_weight:
        return None
    return Ranker(correction, lexical, references, sentence_weight)
