"""Cross-lingual retrieval with a per-model relevance cut-off.

E5 cosine scores crowd into roughly 0.7-1.0, so a fixed threshold means nothing across models:
each known model gets a cut-off calibrated on labelled data (docs/calibration.md,
bench/calibrate_cutoff.py). Unknown models get none; the LLM still says when it does not know.

With language centring (app/language_stats.py) an over-fetched candidate set is re-ranked by
q·d - q·(m_lang - m_all), so a passage no longer wins for being in the question's language. The
cut-off still applies to the raw cosine, the score it was calibrated on, and `Source.score` stays
the raw cosine. Query correction and the lexical bonus re-score the same candidates
(app/chat/ranking.py), so ranking works alike for the embedded store and a Chroma server.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document

from app.chat.ranking import Ranker, best_sentences
from app.chat.types import Source
from ingestion.doc_url import web_url
from ingestion.sentences import META_KEY as SENTENCE_KEY
from ingestion.sentences import unpack

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from langchain_core.vectorstores import VectorStore

    from app.chat.relevance import Relevance
    from app.language_stats import CollectionMeans

# Calibrated on XQuAD (bench/calibrate_cutoff.py); see docs/calibration.md for the method.
CALIBRATED_MIN_SCORE: dict[str, float] = {
    "intfloat/multilingual-e5-small": 0.745,
}
CALIBRATED_MIN_SENTENCE_SCORE: dict[str, float] = {
    "intfloat/multilingual-e5-small": 0.751,  # recalibrated for pieces counted in tokens
}
"""The cut-off on the relevance score used with sentence vectors: the mean of a chunk's cosine
and its best sentence's (bench/calibrate_cutoff.py --sentences, docs/calibration.md)."""


def default_min_score(model_id: str, *, sentences: bool = False) -> float | None:
    """The calibrated cut-off of the score the retriever compares: with sentence vectors (the
    ranking uses them) the mean of the chunk's and its best sentence's cosine, else the cosine."""
    return (CALIBRATED_MIN_SENTENCE_SCORE if sentences else CALIBRATED_MIN_SCORE).get(model_id)


def candidate_depth(k: int) -> int:
    """How many raw hits language centring re-ranks: enough to reach other languages' best."""
    return max(50, 10 * k)


class Retriever:
    """Top-k chunks from one collection, in any language, that pass the cut-off."""

    def __init__(
        self,
        store: VectorStore,
        *,
        k: int = 5,
        min_score: float | None = None,
        centring: CollectionMeans | None = None,
        relevance: Relevance | None = None,
        ranker: Ranker | None = None,
        collection: Collection | None = None,
    ) -> None:
        """`relevance`: a per-query cut-off (the margin over the query's background) on top of
        `min_score`; both apply to the raw cosine. `collection`: the store's Chroma collection,
        searched directly when candidates are re-ranked: one query returns their stored vectors
        too (through the store, a second lookup fetched them: about 1 ms of CPU a question)."""
        self.store = store
        self.collection = collection
        self.k = k
        self.min_score = min_score
        self.centring = centring
        self.relevance = relevance
        self.ranker = ranker

    def retrieve(self, query: str, language: str | None = None) -> list[Source]:
        """`language`: the question's (the chain detects it); None detects it from `query`."""
        if self.centring is None and self.ranker is None and self.relevance is None:
            found = self.store.similarity_search_with_score(query, k=self.k)
            return self._sources([(doc, 1.0 - float(d), None) for doc, d in found], self.min_score)
        vector = self.store.embeddings.embed_query(query)  # type: ignore[union-attr]
        # The margin rule's floor is on the raw cosine; without re-ranking it joins the fixed one.
        floor = self.relevance.cutoff(np.asarray(vector)) if self.relevance else None
        cutoff = _highest(self.min_score, floor)
        reranks = self.centring is not None or self.ranker is not None
        if not reranks:
            found = self.store.similarity_search_by_vector_with_relevance_scores(  # type: ignore[attr-defined]
                vector, k=self.k
            )
            return self._sources([(doc, 1.0 - float(d), None) for doc, d in found], cutoff)
        ranker = self.ranker or Ranker()
        found, stored = self._candidates(vector, candidate_depth(self.k), ranker.needs_vectors)
        raw = np.array([1.0 - float(d) for _, d in found])
        means = self.centring.current() if self.centring is not None else None
        if (means is None and self.ranker is None) or not found:
            return self._sources(
                [(doc, float(r), None) for (doc, _), r in zip(found, raw, strict=True)], cutoff
            )
        languages = [str(doc.metadata.get("language", "und")) for doc, _ in found]
        sentences = self._sentences(found, len(vector)) if ranker.sentence_weight else None
        relevance = raw if sentences is None else _with_sentences(raw, sentences, vector)
        if language is None and ranker.correction is not None:
            from ingestion.language import detect_language

            language = detect_language(query)
        centred = ranker.scores(
            query,
            np.asarray(vector),
            language,
            raw=raw,
            texts=[doc.page_content for doc, _ in found],
            languages=languages,
            vectors=stored,
            means=means,
            sentences=sentences,
        )
        # The fixed cut-off is calibrated on the relevance score (with sentence vectors, the mean
        # of the chunk's cosine and its best sentence's, raw query); the margin rule on the cosine.
        keep = [
            i
            for i in range(len(found))
            if _passes(round(float(relevance[i]), 4), self.min_score)
            and _passes(round(float(raw[i]), 4), floor)
        ]
        keep.sort(key=lambda i: -centred[i])
        return self._sources([(found[i][0], float(raw[i]), float(centred[i])) for i in keep], None)

    def _candidates(
        self, vector: list[float], k: int, with_vectors: bool
    ) -> tuple[list[tuple[Document, float]], np.ndarray | None]:
        """The k nearest chunks with their cosine distances, and with `with_vectors` their stored
        vectors in the same order: one query to the collection when it was given."""
        if self.collection is None:
            found = self.store.similarity_search_by_vector_with_relevance_scores(  # type: ignore[attr-defined]
                vector, k=k
            )
            return found, self._vectors([doc for doc, _ in found]) if with_vectors else None
        include: list[Any] = ["documents", "metadatas", "distances"]
        queries: list[Sequence[float]] = [vector]
        got = self.collection.query(
            query_embeddings=queries,
            n_results=k,
            include=[*include, "embeddings"] if with_vectors else include,
        )
        rows = zip(
            got["ids"][0],
            got["documents"][0],  # type: ignore[index]
            got["metadatas"][0],  # type: ignore[index]
            got["distances"][0],  # type: ignore[index]
            got["embeddings"][0] if with_vectors else itertools.repeat(None),  # type: ignore[index]
            strict=False,
        )
        # as the LangChain store reads a result: a chunk without text is no candidate
        kept = [row for row in rows if row[1] is not None]
        found = [(Document(text, metadata=meta or {}, id=i), d) for i, text, meta, d, _ in kept]
        if not with_vectors:
            return found, None
        stored = np.asarray([row[4] for row in kept], dtype=np.float64)
        return found, stored.reshape(len(kept), len(vector))

    @staticmethod
    def _sentences(found: list[tuple[Document, float]], dimension: int) -> list[np.ndarray | None]:
        """The candidates' sentence vectors, packed in their metadata at ingestion."""
        return [unpack(doc.metadata.get(SENTENCE_KEY), dimension) for doc, _ in found]

    def _vectors(self, docs: list[Document]) -> np.ndarray:
        """The stored vectors of the candidates, in their order (one call to the store)."""
        ids = [str(doc.id) for doc in docs]
        got = self.store.get(ids=ids, include=["embeddings"])  # type: ignore[attr-defined]
        by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
        return np.asarray([by_id[i] for i in ids], dtype=np.float64)

    def _sources(
        self, ranked: list[tuple[Document, float, float | None]], cutoff: float | None
    ) -> list[Source]:
        sources: list[Source] = []
        for doc, similarity, ranking in ranked:
            score = round(float(similarity), 4)  # Chroma's cosine distance -> similarity
            if not _passes(score, cutoff):
                continue
            if len(sources) == self.k:
                break
            meta = doc.metadata
            page = meta.get("page")
            sources.append(
                Source(
                    number=len(sources) + 1,
                    source=str(meta.get("source", "")),
                    title=str(meta.get("title", "")),
                    language=str(meta.get("language", "und")),
                    score=score,
                    text=doc.page_content,
                    page=int(page) if page is not None else None,
                    section=str(meta.get("section", "")),
                    chunk_index=int(meta.get("chunk_index", 0)),
                    ranking_score=None if ranking is None else round(ranking, 4),
                    url=web_url(meta.get("url")),  # checked again: the store is not trusted
                )
            )
        return sources


def _with_sentences(
    raw: np.ndarray, sentences: list[np.ndarray | None], vector: list[float]
) -> np.ndarray:
    """The relevance score with sentence vectors: the mean of each chunk's cosine and its best
    sentence's (its cosine alone without any). Raw query, as calibrated: an answerable question
    has one sentence that says it; an unanswerable one that shares the topic has none."""
    return (raw + best_sentences(np.asarray(vector), sentences, raw)) / 2


def _highest(*cutoffs: float | None) -> float | None:
    given = [c for c in cutoffs if c is not None]
    return max(given) if given else None


def _passes(score: float, cutoff: float | None) -> bool:
    return cutoff is None or score >= cutoff
