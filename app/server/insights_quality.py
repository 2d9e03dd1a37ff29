"""Conversation quality over time: per day or week, language and assistant, how many
conversations and messages there were, how many questions were answered, feedback and its
score, and handovers to a person. Read from the conversation tables directly (no refresh
needed); `sessions.assistant` and `handoffs` are used where the schema has them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import literal, select
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


def _period(moment: Any, bucket: Bucket) -> date:
    day: date = moment.date()
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def quality(db: Session, t: Tables, f: Filters, bucket: Bucket) -> list[QualityRow]:
    m, s, fb = t.messages, t.sessions, t.feedback
    start, end = day_bounds(f)
    assistant = t.column(s, "assistant")
    who = assistant if assistant is not None else literal(None)
    answered = answered_expr(t, m)
    where = [m.c.created >= start, m.c.created < end]
    if f.collection is not None:
        where.append(s.c.collection == f.collection)
    if f.assistant is not None:  # without sessions.assistant no conversation has one
        where.append(assistant == f.assistant if assistant is not None else literal(False))
    rows = db.execute(
        select(m.c.id, m.c.session_id, m.c.role, m.c.language, m.c.created, who, answered)
        .select_from(m.join(s, s.c.id == m.c.session_id))
        .where(*where)
        .order_by(m.c.id)
    ).all()
    keyed: dict[tuple[date, str, str | None], dict[str, Any]] = defaultdict(
        lambda: {"sessions": set(), "messages": 0, "questions": 0, "answered": 0, "answers": 0}
    )
    session_language: dict[str, str] = {}
    message_key: dict[int, tuple[date, str, str | None]] = {}
    for mid, session, role, language, created, owner, ok in rows:
        if role == "user":
            session_language.setdefault(session, language or "")
        language = language or session_language.get(session, "")
        if f.language is not None and language != f.language:
            continue
        key = (_period(created, bucket), language, owner)
        cell = keyed[key]
        cell["messages"] += 1
        if role == "user":
            cell["questions"] += 1
            cell["sessions"].add(session)
        elif role == "assistant":
            cell["answers"] += 1
            cell["answered"] += int(ok or 0)
            message_key[mid] = key
    ratings: dict[tuple[date, str, str | None], list[str]] = defaultdict(list)
    ids = list(message_key)
    for lo in range(0, len(ids), 500):  # IN lists stay small on every backend
        for message_id, rating in db.execute(
            select(fb.c.message_id, fb.c.rating).where(fb.c.message_id.in_(ids[lo : lo + 500]))
        ):
            ratings[message_key[message_id]].append(rating)
    handovers = _handovers(db, t, f, bucket, session_language, start, end)
    out = []
    for key in sorted(set(keyed) | set(handovers), key=lambda k: (k[0], k[1], k[2] or "")):
        cell = keyed.get(key) or {"sessions": set(), "messages": 0, "questions": 0, "answers": 0}
        given = ratings.get(key, [])
        out.append(
            QualityRow(
                period=key[0],
                language=key[1],
                assistant=key[2],
                conversations=len(cell["sessions"]),
                messages=cell["messages"],
                questions=cell["questions"],
                answered=cell.get("answered", 0),
                unanswered=cell["answers"] - cell.get("answered", 0),
                feedback=len(given),
                score=round(given.count("up") / len(given), 4) if given else None,
                handovers=handovers.get(key, 0),
            )
        )
    return out


def _handovers(
    db: Session,
    t: Tables,
    f: Filters,
    bucket: Bucket,
    session_language: dict[str, str],
    start: Any,
    end: Any,
) -> dict[tuple[date, str, str | None], int]:
    h, s = t.handoffs, t.sessions
    if h is None:
        return {}
    assistant = t.column(s, "assistant")
    who = assistant if assistant is not None else literal(None)
    where = [h.c.created >= start, h.c.created < end]
    if f.collection is not None:
        where.append(s.c.collection == f.collection)
    if f.assistant is not None:
        where.append(assistant == f.assistant if assistant is not None else literal(False))
    out: dict[tuple[date, str, str | None], int] = defaultdict(int)
    for session, created, owner in db.execute(
        select(h.c.session_id, h.c.created, who)
        .select_from(h.join(s, s.c.id == h.c.session_id))
        .where(*where)
    ):
        language = session_language.get(session, "")
        if f.language is None or language == f.language:
            out[(_period(created, bucket), language, owner)] += 1
    return out
