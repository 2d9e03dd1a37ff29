"""Retrieval evaluation on the user's own questions: recall@k, MRR and nDCG, per query language.

The model card's advice is to benchmark on your own domain before choosing a model; this runs
the same path as the chat chain (the profile's query form, the collection's index) without any
LLM. A document counts once: its chunks are collapsed to its best-ranked one.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from chromadb.api.models.Collection import Collection

    from app.chat.ranking import Ranker
    from app.embeddings.e5 import E5Embeddings
    from app.language_stats import LanguageMeans

CUTS = (1, 5, 10)


class EvalInputError(ValueError):
    """A queries file line the evaluation cannot use; the message names the line."""


@dataclass(frozen=True)
class EvalQuery:
    question: str
    lang: str
    source: str | None = None
    paragraph_id: str | None = None

    def matches(self, source: str) -> bool:
        if self.source is not None:
            return source == self.source
        return PurePosixPath(source).stem == self.paragraph_id


@dataclass
class EvalReport:
    k: int
    queries: int
    overall: dict[str, float]
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # questions per language

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "queries": self.queries,
            "overall": self.overall,
            "by_language": self.by_language,
            "queries_by_language": self.counts,
        }


def read_queries(path: Path) -> list[EvalQuery]:
    out = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EvalInputError(f"{path}:{number}: not JSON ({exc})") from exc
            question = row.get("question")
            source, paragraph = row.get("source"), row.get("paragraph_id")
            if not isinstance(question, str) or not question.strip():
                raise EvalInputError(f"{path}:{number}: needs a non-empty 'question'")
            if source is None and paragraph is None:
                raise EvalInputError(f"{path}:{number}: needs 'source' or 'paragraph_id'")
            out.append(
                EvalQuery(
                    question,
                    str(row.get("lang") or "all"),
                    str(source) if source is not None else None,
                    str(paragraph) if paragraph is not None else None,
                )
            )
    if not out:
        raise EvalInputError(f"{path}: no queries")
    return out


def sample_per_language(queries: list[EvalQuery], n: int) -> list[EvalQuery]:
    """At most n questions per language, evenly spaced in file order, so a quick run still
    covers the whole corpus (XQuAD's questions come paragraph by paragraph)."""
    groups: dict[str, list[EvalQuery]] = defaultdict(list)
    for q in queries:
        groups[q.lang].append(q)
    keep = set()
    for rows in groups.values():
        step = max(len(rows) / n, 1.0)
        keep |= {id(rows[int(i * step)]) for i in range(min(n, len(rows)))}
    return [q for q in queries if id(q) in keep]


def first_relevant_rank(query: EvalQuery, ranked_sources: list[str]) -> int | None:
    for rank, source in enumerate(ranked_sources, 1):
        if query.matches(source):
            return rank
    return None


def score_ranks(ranks: list[int | None], k: int) -> dict[str, float]:
    """Binary relevance, one relevant document per query."""
    n = len(ranks)
    metrics = {
        f"recall@{c}": sum(1 for r in ranks if r is not None and r <= c) / n for c in CUTS if c <= k
    }
    metrics[f"mrr@{k}"] = sum(1 / r for r in ranks if r is not None and r <= k) / n
    metrics[f"ndcg@{k}"] = sum(1 / math.log2(r + 1) for r in ranks if r is not None and r <= k) / n
    return {name: round(value, 4) for name, value in metrics.items()}


def report(queries: list[EvalQuery], ranks: list[int | None], k: int) -> EvalReport:
    groups: dict[str, list[int | None]] = defaultdict(list)
    for q, r in zip(queries, ranks, strict=True):
        groups[q.lang].append(r)
    return EvalReport(
        k,
        len(queries),
        score_ranks(ranks, k),
        {lang: score_ranks(rs, k) for lang, rs in sorted(groups.items())},
        {lang: len(rs) for lang, rs in sorted(groups.items())},
    )


def dedupe_sources(metadatas: list[Any], k: int) -> list[str]:
    seen: dict[str, None] = {}
    for meta in metadatas:
        seen.setdefault(str(meta["source"]), None)
        if len(seen) == k:
            break
    return list(seen)


def document_ranks(
    search: Callable[[str], Iterable[str]], queries: list[EvalQuery], k: int
) -> list[int | None]:
    """Rank of each query's document among the first k distinct documents `search` returns.

    `search` maps a question to chunk sources, best first (the product's Retriever in
    app/evaluation_scenarios.py); a document's chunks count once, at its best rank.
    """
    ranks: list[int | None] = []
    for q in queries:
        documents = list(dict.fromkeys(search(q.question)))[:k]
        ranks.append(first_relevant_rank(q, documents))
    return ranks


def evaluate(
    embedder: E5Embeddings,
    collection: Collection,
    queries: list[EvalQuery],
    *,
    k: int = 10,
    batch: int = 256,
    means: LanguageMeans | None = None,
    ranker: Ranker | None = None,
) -> EvalReport:
    """Rank documents for every query through the collection's index, then score the ranks.

    With `means` or `ranker`, the candidates are re-ranked exactly as the Retriever does
    (app/chat/ranking.py), over the same candidate depth, with the question's detected language.
    """
    import numpy as np

    from app.chat.ranking import Ranker
    from app.chat.retriever import candidate_depth
    from ingestion.language import detect_language

    reranks = means is not None or ranker is not None
    depth = max(candidate_depth(k), 4 * k) if reranks else max(4 * k, 20)
    depth = min(depth, max(collection.count(), 1))
    ranks: list[int | None] = []
    for start in range(0, len(queries), batch):
        part = queries[start : start + batch]
        vectors: np.ndarray = embedder.encode([embedder.profile.query(q.question) for q in part])
        include: Any = ["metadatas", "distances", "documents"]
        if ranker is not None and ranker.needs_vectors:
            include.append("embeddings")
        found = collection.query(query_embeddings=vectors, n_results=depth, include=include)
        for i, (q, vector) in enumerate(zip(part, vectors, strict=True)):
            metas = (found["metadatas"] or [])[i]
            if reranks:
                scores = (ranker or Ranker()).scores(
                    q.question,
                    vector,
                    detect_language(q.question) if ranker and ranker.correction else None,
                    raw=[1.0 - d for d in (found["distances"] or [])[i]],
                    texts=[str(t) for t in (found["documents"] or [])[i]],
                    languages=[str(m.get("language", "und")) for m in metas],
                    vectors=np.asarray((found["embeddings"] or [])[i])
                    if "embeddings" in include
                    else None,
                    means=means,
                )
                metas = [metas[j] for j in sorted(range(len(metas)), key=lambda j: -scores[j])]
            ranks.append(first_relevant_rank(q, dedupe_sources(metas, k)))
    return report(queries, ranks, k)
