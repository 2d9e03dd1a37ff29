"""Conversation quality over time: per day or week, language and assistant, how many
conversations and messages there were, how many questions were answered, feedback and its
score, and handovers to a person. Read from the conversation tables directly (no refresh
needed); `sessions.assistant` and `handoffs` are used where the schema has them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from app.server.insights_reports import Filters, answered_expr, day_bounds
from app.server.insights_tables import Tables

Bucket = Literal["day", "week"]


class QualityRow(BaseModel):
    period: date = Field(description="The day, or the Monday of the week.")
    language: str
    assistant: str | None
    conversations: int = Field(description="Conversations with a question in this period.")
    messages: int = Field(description="Messages of every role.")
    questions: int
    answered: int = Field(description="Answers that had passages above the cut-off.")
    unanswered: int
    feedback: int = Field(description="Ratings given to these answers.")
    score: float | None = Field(description="Share of thumbs-up among the ratings; None: none.")
    handovers: int = Field(description="Conversations handed to a person in this period.")


def _period(day: date, bucket: Bucket) -> date:
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def _day(value: Any) -> date:
    """SQL date() gives a string on SQLite and a date on PostgreSQL."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


Key = tuple[date, str, str | None]


def quality(db: Session, t: Tables, f: Filters, bucket: Bucket) -> list[QualityRow]:
    """Counted in SQL per day, language, assistant and role; weeks add their days up, so a
    conversation active on several days of a week counts once per day."""
    m, s, fb = t.messages, t.sessions, t.feedback
    start, end = day_bounds(f)
    assistant = t.column(s, "assistant")
    who = (assistant if assistant is not None else literal(None)).label("who")
    day = func.date(m.c.created).label("day")
    where = [m.c.created >= start, m.c.created < end]
    if f.collection is not None:
        where.append(s.c.collection == f.collection)
    if f.assistant is not None:  # without sessions.assistant no conversation has one
        where.append(assistant == f.assistant if assistant is not None else literal(False))
    if f.language is not None:
        where.append(m.c.language == f.language)
    joined = m.join(s, s.c.id == m.c.session_id)
    cells: dict[Key, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for when, language, owner, role, count, answered, sessions in db.execute(
        select(
            day,
            m.c.language,
            who,
            m.c.role,
            func.count(),
            func.sum(answered_expr(t, m)),
            func.count(func.distinct(m.c.session_id)),
        )
        .select_from(joined)
        .where(*where)
        .group_by(day, m.c.language, who, m.c.role)
    ):
        cell = cells[(_period(_day(when), bucket), language or "", owner)]
        cell["messages"] += count
        if role == "user":
            cell["questions"] += count
            cell["conversations"] += sessions
        elif role == "assistant":
            cell["answers"] += count
            cell["answered"] += int(answered or 0)
    for when, language, owner, rating, count in db.execute(
        select(day, m.c.language, who, fb.c.rating, func.count())
        .select_from(joined.join(fb, fb.c.message_id == m.c.id))
        .where(*where, m.c.role == "assistant")
        .group_by(day, m.c.language, who, fb.c.rating)
    ):
        cell = cells[(_period(_day(when), bucket), language or "", owner)]
        cell["feedback"] += count
        cell["up"] += count if rating == "up" else 0
    for key, count in _handovers(db, t, f, bucket, start, end).items():
        cells[key]["handovers"] += count
    return [
        QualityRow(
            period=key[0],
            language=key[1],
            assistant=key[2],
            conversations=c["conversations"],
            messages=c["messages"],
            questions=c["questions"],
            answered=c["answered"],
            unanswered=c["answers"] - c["answered"],
            feedback=c["feedback"],
            score=round(c["up"] / c["feedback"], 4) if c["feedback"] else None,
            handovers=c["handovers"],
        )
        for key, c in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))
    ]


def _handovers(
    db: Session, t: Tables, f: Filters, bucket: Bucket, start: Any, end: Any
) -> dict[Key, int]:
    """Handoffs created in the period, under the language of their conversation's first
    question."""
    h, s, m = t.handoffs, t.sessions, t.messages
    if h is None:
        return {}
    assistant = t.column(s, "assistant")
    who = assistant if assistant is not None else literal(None)
    asked, spoken = m.alias("asked"), m.alias("spoken")
    first = (
        select(func.min(asked.c.id))
        .where(asked.c.session_id == h.c.session_id, asked.c.role == "user")
        .correlate(h)
        .scalar_subquery()
    )
    language = select(spoken.c.language).where(spoken.c.id == first).correlate(h).scalar_subquery()
    where = [h.c.created >= start, h.c.created < end]
    if f.collection is not None:
        where.append(s.c.collection == f.collection)
    if f.assistant is not None:
        where.append(assistant == f.assistant if assistant is not None else literal(False))
    out: dict[Key, int] = defaultdict(int)
    for created, owner, spoken in db.execute(
        select(h.c.created, who, language)
        .select_from(h.join(s, s.c.id == h.c.session_id))
        .where(*where)
    ):
        if f.language is None or spoken == f.language:
            out[(_period(created.date(), bucket), spoken or "", owner)] += 1
    return out
