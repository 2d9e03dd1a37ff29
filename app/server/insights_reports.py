"""The operator's reports on clustered questions: top questions, content gaps, source usage.

Every report reads only the questions that pass the filters (assistant, collection, language,
period): counts, examples and representatives all come from that set, so filtering by one
assistant never shows another's questions. Aggregates run in SQL (GROUP BY, ROW_NUMBER); Python
only touches the top clusters' rows. Conversation quality over time is in
app.server.insights_quality.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import Integer, and_, case, cast, desc, exists, func, literal, select
from sqlalchemy.orm import Session

from app.server.insights_tables import Tables, from_bytes

CANDIDATES = 200  # members per cluster considered for its representative (newest first)
_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Filters:
    """Which questions a report reads; `until` is inclusive (the whole day)."""

    assistant: str | None = None
    collection: str | None = None
    language: str | None = None
    since: date | None = None
    until: date | None = None


class Example(BaseModel):
    message_id: int
    text: str
    language: str


class ClusterReport(BaseModel):
    cluster: int = Field(description="The cluster's id (stable across refreshes).")
    questions: int = Field(description="Questions in this cluster that pass the filters.")
    languages: dict[str, int] = Field(description="Question count per language.")
    representative: Example = Field(
        description="The most central question, in the requested language when it has one."
    )
    answer_rate: float = Field(description="Share of its questions whose answer was grounded.")
    unanswered: int = Field(0, description="Questions that found nothing relevant.")
    thumbs_down: int = Field(0, description="Questions whose answer got a thumbs-down.")
    handed_over: int = Field(0, description="Questions whose conversation went to a person.")
    examples: list[Example]


class DocumentUsage(BaseModel):
    collection: str
    source: str = Field(description="The document's path in its knowledge base.")
    cited: int = Field(description="Answers that cite it ([n] in the answer).")
    shown: int = Field(description="Answers that showed it as a source.")
    languages: dict[str, int] = Field(description="Citations per question language.")


class SourceUsage(BaseModel):
    cited: list[DocumentUsage] = Field(description="Most cited documents first.")
    never_cited: list[DocumentUsage] = Field(
        description="Documents of the knowledge bases that no answer in the period cited."
    )
    answers: int = Field(description="Answers read.")
    by_language: dict[str, int] = Field(description="Citations per question language.")


def day_bounds(f: Filters) -> tuple[datetime | None, datetime | None]:
    """Naive UTC instants (the database stores naive UTC): since 00:00, until the next 00:00."""
    start = datetime.combine(f.since, time()) if f.since else None
    end = datetime.combine(f.until + timedelta(days=1), time()) if f.until else None
    return start, end


def _where(t: Tables, f: Filters) -> list[Any]:
    q = t.questions
    start, end = day_bounds(f)
    conditions = [
        q.c.assistant == f.assistant if f.assistant is not None else None,
        q.c.collection == f.collection if f.collection is not None else None,
        q.c.language == f.language if f.language is not None else None,
        q.c.created >= start if start is not None else None,
        q.c.created < end if end is not None else None,
    ]
    return [c for c in conditions if c is not None]


def answered_expr(t: Tables, m: Any) -> Any:
    """1 when the message `m` (an answer) had passages above the cut-off: `grounded`, or for
    rows without it (and schemas before it) whether it showed sources; 0 for no answer."""
    has_sources = and_(m.c.sources.is_not(None), m.c.sources != "[]")
    from_sources = case((has_sources, 1), else_=0)
    grounded = t.column(m, "grounded")
    if grounded is None:
        return from_sources
    return case((grounded.is_(None), from_sources), (grounded, 1), else_=0)


class _Flags:
    """SQL expressions (0/1) for one question: answered, thumbs-down, handed over."""

    def __init__(self, t: Tables) -> None:
        q, a = t.questions, t.messages.alias("answer")
        self.answer = a
        self.answered = answered_expr(t, a)
        fb = t.feedback
        self.down = case(
            (exists().where(fb.c.message_id == a.c.id, fb.c.rating == "down"), 1), else_=0
        )
        h = t.handoffs
        self.handed = (
            cast(literal(0), Integer)
            if h is None
            else case(
                (exists().where(h.c.session_id == q.c.session_id, h.c.created >= q.c.created), 1),
                else_=0,
            )
        )


def clusters_report(
    db: Session,
    t: Tables,
    f: Filters,
    centroids: Callable[[Iterable[int]], dict[int, np.ndarray]],
    *,
    gaps: bool,
    limit: int,
    examples: int,
    operator_language: str | None,
) -> list[ClusterReport]:
    """Top questions (largest clusters first) or, with `gaps`, the clusters with questions that
    went unanswered, got a thumbs-down or were handed over (most such questions first)."""
    q = t.questions
    flags = _Flags(t)
    where = _where(t, f)
    unanswered = func.sum(1 - flags.answered)
    problems = unanswered + func.sum(flags.down) + func.sum(flags.handed)
    query = (
        select(
            q.c.cluster_id,
            func.count(),
            func.sum(flags.answered),
            unanswered,
            func.sum(flags.down),
            func.sum(flags.handed),
        )
        .select_from(q.outerjoin(flags.answer, flags.answer.c.id == q.c.answer_id))
        .where(*where)
        .group_by(q.c.cluster_id)
    )
    if gaps:
        query = query.having(problems > 0).order_by(desc(problems), desc(func.count()))
    else:
        query = query.order_by(desc(func.count()), q.c.cluster_id)
    top = db.execute(query.limit(limit)).all()
    ids = [r[0] for r in top]
    if not ids:
        return []
    languages: dict[int, dict[str, int]] = defaultdict(dict)
    for cluster, language, count in db.execute(
        select(q.c.cluster_id, q.c.language, func.count())
        .where(*where, q.c.cluster_id.in_(ids))
        .group_by(q.c.cluster_id, q.c.language)
    ):
        languages[cluster][language] = count
    flagged = (1 - flags.answered) + flags.down + flags.handed if gaps else literal(0)
    shown = _examples(db, t, where, ids, flags, flagged, examples)
    central = _representatives(db, t, where, ids, centroids, operator_language)
    return [
        ClusterReport(
            cluster=cluster,
            questions=count,
            languages=dict(sorted(languages[cluster].items(), key=lambda kv: -kv[1])),
            representative=central[cluster],
            answer_rate=round((answered or 0) / count, 4),
            unanswered=missing or 0,
            thumbs_down=down or 0,
            handed_over=handed or 0,
            examples=shown.get(cluster, []),
        )
        for cluster, count, answered, missing, down, handed in top
    ]


def _examples(
    db: Session,
    t: Tables,
    where: list[Any],
    ids: list[int],
    flags: _Flags,
    flagged: Any,
    k: int,
) -> dict[int, list[Example]]:
    """Up to `k` different questions per cluster, newest first (the flagged ones first)."""
    q, m = t.questions, t.messages
    rank = func.row_number().over(
        partition_by=q.c.cluster_id, order_by=[desc(flagged), desc(q.c.id)]
    )
    inner = (
        select(q.c.cluster_id, q.c.message_id, q.c.language, m.c.content, rank.label("rank"))
        .select_from(
            q.join(m, m.c.id == q.c.message_id).outerjoin(
                flags.answer, flags.answer.c.id == q.c.answer_id
            )
        )
        .where(*where, q.c.cluster_id.in_(ids))
        .subquery()
    )
    rows = db.execute(select(inner).where(inner.c.rank <= 3 * k).order_by(inner.c.rank))
    out: dict[int, list[Example]] = defaultdict(list)
    seen: set[tuple[int, str]] = set()
    for cluster, mid, language, content, _ in rows:
        key = (cluster, content.strip().casefold())
        if len(out[cluster]) < k and key not in seen:
            seen.add(key)
            out[cluster].append(Example(message_id=mid, text=content, language=language))
    return out


def _representatives(
    db: Session,
    t: Tables,
    where: list[Any],
    ids: list[int],
    centroids: Callable[[Iterable[int]], dict[int, np.ndarray]],
    language: str | None,
) -> dict[int, Example]:
    """Per cluster, the filtered question nearest its centroid, among its newest CANDIDATES;
    in `language` when the cluster has a question in it."""
    q, m = t.questions, t.messages
    preferred = case((q.c.language == language, 1), else_=0) if language else literal(0)
    rank = func.row_number().over(
        partition_by=q.c.cluster_id, order_by=[desc(preferred), desc(q.c.id)]
    )
    inner = (
        select(
            q.c.cluster_id,
            q.c.message_id,
            q.c.language,
            q.c.vector,
            m.c.content,
            rank.label("rank"),
        )
        .select_from(q.join(m, m.c.id == q.c.message_id))
        .where(*where, q.c.cluster_id.in_(ids))
        .subquery()
    )
    rows = db.execute(select(inner).where(inner.c.rank <= CANDIDATES)).all()
    units = centroids(ids)
    by_cluster: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_cluster[row[0]].append(row)
    out: dict[int, Example] = {}
    for cluster, members in by_cluster.items():
        if language and any(r[2] == language for r in members):
            members = [r for r in members if r[2] == language]
        centre = units.get(cluster)
        vectors = np.stack([from_bytes(r[3]) for r in members])
        best = members[int(np.argmax(vectors @ centre))] if centre is not None else members[0]
        out[cluster] = Example(message_id=best[1], text=best[4], language=best[2])
    return out


def source_usage(
    db: Session,
    t: Tables,
    f: Filters,
    documents: Callable[[str], list[str]] | None,
    collections: Callable[[], list[str]] | None,
    *,
    limit: int,
) -> SourceUsage:
    """Documents cited by the answers to the filtered questions, most first, and the documents
    of their knowledge bases that none cited. A citation is an [n] of `messages.cited` where the
    schema has it, else an [n] in the answer's text that names one of its sources."""
    q, a = t.questions, t.messages.alias("answer")
    cited_column = t.column(a, "cited")
    extra = [cited_column] if cited_column is not None else []
    rows = db.execute(
        select(q.c.collection, q.c.language, a.c.sources, a.c.content, *extra)
        .select_from(q.join(a, a.c.id == q.c.answer_id))
        .where(*_where(t, f))
    )
    shown: Counter[tuple[str, str]] = Counter()
    cited: Counter[tuple[str, str]] = Counter()
    languages: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_language: Counter[str] = Counter()
    answers = 0
    for row in rows:
        answers += 1
        collection, language, sources_json, content = row[0], row[1], row[2], row[3]
        stored = row[4] if extra else None
        sources = _json_list(sources_json)
        numbers = (
            {int(n) for n in _json_list(stored) if isinstance(n, int)}
            if stored is not None
            else {int(n) for n in _CITATION.findall(content or "")}
        )
        for source in sources:
            if not isinstance(source, dict) or not isinstance(source.get("source"), str):
                continue
            key = (collection, source["source"])
            shown[key] += 1
            if source.get("number") in numbers:
                cited[key] += 1
                languages[key][language] += 1
                by_language[language] += 1
    used = [
        DocumentUsage(
            collection=c,
            source=s,
            cited=cited[(c, s)],
            shown=shown[(c, s)],
            languages=dict(languages[(c, s)]),
        )
        for c, s in sorted(shown, key=lambda k: (-cited[k], -shown[k], k))
    ]
    never: list[DocumentUsage] = []
    if documents is not None:
        if f.collection is not None:
            names = [f.collection]
        elif f.assistant is not None or collections is None:
            names = sorted({c for c, _ in shown})
        else:
            names = collections()
        for name in names:
            for source in sorted(documents(name)):
                if cited[(name, source)] == 0 and len(never) < limit:
                    never.append(
                        DocumentUsage(
                            collection=name,
                            source=source,
                            cited=0,
                            shown=shown[(name, source)],
                            languages={},
                        )
                    )
    return SourceUsage(
        cited=[u for u in used if u.cited][:limit],
        never_cited=never,
        answers=answers,
        by_language=dict(by_language),
    )


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value) if value else []
    except (TypeError, ValueError):
        return []
    return parsed if isinstance(parsed, list) else []


def utc_today() -> date:
    return datetime.now(UTC).date()
