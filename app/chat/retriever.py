"""Cross-lingual retrieval with a per-model relevance cut-off.

E5 cosine scores crowd into roughly 0.7-1.0, so a fixed threshold means nothing across models:
each known model gets a cut-off calibrated on labelled data (docs/calibration.md,
bench/calibrate_cutoff.py). Unknown models get none; the LLM still says when it does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.chat.types import Source

if TYPE_CHECKING:
    from langchain_core.vectorstores import VectorStore

# Calibrated on XQuAD (bench/calibrate_cutoff.py); see docs/calibration.md for the method.
CALIBRATED_MIN_SCORE: dict[str, float] = {
    "intfloat/multilingual-e5-small": 0.745,
}


def default_min_score(model_id: str) -> float | None:
    return CALIBRATED_MIN_SCORE.get(model_id)


class Retriever:
    """Top-k chunks from one collection, in any language, that pass the cut-off."""

    def __init__(self, store: VectorStore, *, k: int = 5, min_score: float | None = None) -> None:
        self.store = store
        self.k = k
        self.min_score = min_score

    def retrieve(self, query: str) -> list[Source]:
        found = self.store.similarity_search_with_score(query, k=self.k)
        sources: list[Source] = []
        for doc, distance in found:
            score = round(1.0 - float(distance), 4)  # Chroma's cosine distance -> similarity
            if self.min_score is not None and score < self.min_score:
                continue
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
                )
            )
        return sources
