"""One ranking from several searches: the question and its translations (app/chat/translate.py).

Each variant is searched on its own with the normal retriever (cut-off, language centring and
all), so fusion only sees passages that passed. A passage's fused score is the best ranking
score any variant gave it ("max"), or the sum over the variants that found it ("sum", which
rewards agreement); bench/query_translation.py compares the two on real model output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.chat.retriever import Retriever
    from app.chat.types import Source

Fusion = Literal["max", "sum"]


def ranking(source: Source) -> float:
    """The score the retriever ranked by: the centred one when centring ranked, else cosine."""
    return source.score if source.ranking_score is None else source.ranking_score


def fuse(results: Sequence[Sequence[Source]], k: int, how: Fusion = "max") -> list[Source]:
    """Top `k` distinct passages over all result lists, renumbered 1..k; a passage keeps the
    Source of the variant that ranked it highest (its cosine is the one shown)."""
    best: dict[tuple[str, int, str], Source] = {}
    fused: dict[tuple[str, int, str], float] = {}
    for sources in results:
        for s in sources:
            key = (s.source, s.chunk_index, s.section)
            score = ranking(s)
            if key not in best or score > ranking(best[key]):
                best[key] = s
            previous = fused.get(key)
            if previous is None:
                fused[key] = score
            else:
                fused[key] = max(previous, score) if how == "max" else previous + score
    order = sorted(fused, key=lambda key: -fused[key])[:k]
    return [replace(best[key], number=i) for i, key in enumerate(order, 1)]


def retrieve_fused(
    retriever: Retriever,
    queries: Sequence[str],
    language: str | None = None,
    how: Fusion = "max",
) -> list[Source]:
    """Search each query with `retriever` and fuse; one query is a plain search. `language` is
    the question's: the first query is in it, each translation's language is detected."""
    if len(queries) == 1:
        return retriever.retrieve(queries[0], language)
    found = [retriever.retrieve(q, language if i == 0 else None) for i, q in enumerate(queries)]
    return fuse(found, retriever.k, how)
