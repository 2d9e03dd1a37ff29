"""The conversation list's SQL (SQLite and Postgres alike), computed by the database, never row
by row here: first a page of session ids (every filter a correlated EXISTS or the last message's
time, answered from the messages' session index), then the counts of that page only, grouped.

A conversation's time is its last message's (its start, while it has none); the list runs
newest first, and the `next` cursor is that time and the session id of the page's last row.
The export walks sessions in id order instead, so each batch stops after `limit` matches."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select

from app.server.db import ChatSession, Feedback, Handoff, LeadRow, Message

Rating = Literal["up", "down", "none"]
MAX_Q = 200
MAX_CURSOR = 200
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ConversationFilter:
    """Every filter of the list and the export; None: not filtered on."""

    assistant: str | None = None
    collection: str | None = None
    language: str | None = None  # any question of the conversation in it
    since: datetime | None = None  # last message at or after
    until: datetime | None = None  # last message before
    rating: Rating | None = None  # some answer rated up / down; none: no feedback at all
    unanswered: bool | None = None  # some answer found nothing (or not)
    handed_over: bool | None = None  # a handoff was requested (or not)
    lead: bool | None = None  # the visitor left their contact (or not)
    q: str | None = None  # case-insensitive substring of any message


@dataclass(frozen=True)
class Cursor:
    last_at: datetime
    session_id: str

    def encode(self) -> str:
        raw = json.dumps([self.last_at.isoformat(), self.session_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """The cursor a page handed out; ValueError for anything else (a 422, not a 500)."""
    if len(token) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise ValueError("not a cursor this server handed out")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        moment, session_id = json.loads(raw)
        last_at = datetime.fromisoformat(moment)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("not a cursor this server handed out") from None
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise ValueError("not a cursor this server handed out")
    return Cursor(naive_utc(last_at), session_id)


def naive_utc(moment: datetime) -> datetime:
    """Stored times are UTC without a zone (SQLite keeps none); a zoneless input is UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def start_of(value: date | datetime) -> datetime:
    """`since`: a bare date means from its first moment."""
    if isinstance(value, datetime):
        return naive_utc(value)
    return datetime(value.year, value.month, value.day)


def end_of(value: date | datetime) -> datetime:
    """`until`: a bare date means through its last moment (exclusive bound: the next day)."""
    if isinstance(value, datetime):
        return naive_utc(value)
    return datetime(value.year, value.month, value.day) + timedelta(days=1)


def like_pattern(q: str) -> str:
    """`q` as a LIKE substring pattern with its own %, _ and \\ matched literally."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _found_nothing() -> ColumnElement[bool]:
    """An answer that found nothing: grounded false, or (rows before revision 0006, grounded
    NULL) no sources shown."""
    return and_(
        Message.role == "assistant",
        or_(
            Message.grounded.is_(False),
            and_(Message.grounded.is_(None), Message.sources == "[]"),
        ),
    )


def last_at() -> ColumnElement[datetime]:
    """The conversation's last message's time, or its start while it has none."""
    last = (
        select(func.max(Message.created))
        .where(Message.session_id == ChatSession.id)
        .scalar_subquery()
    )
    return func.coalesce(last, ChatSession.created)


def _conditions(f: ConversationFilter, when: ColumnElement[datetime]) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.assistant is not None:
        where.append(ChatSession.assistant == f.assistant)
    if f.collection is not None:
        where.append(ChatSession.collection == f.collection)
    if f.language is not None:
        where.append(_any_message(Message.role == "user", Message.language == f.language))
    if f.since is not None:
        where.append(when >= naive_utc(f.since))
    if f.until is not None:
        where.append(when < naive_utc(f.until))
    if f.rating in ("up", "down"):
        where.append(_rated(Feedback.rating == f.rating))
    elif f.rating == "none":
        where.append(~_rated())
    if f.unanswered is not None:
        nothing = _any_message(_found_nothing())
        where.append(nothing if f.unanswered else ~nothing)
    if f.handed_over is not None:
        handed = exists().where(Handoff.session_id == ChatSession.id)
        where.append(handed if f.handed_over else ~handed)
    if f.lead is not None:
        has_lead = exists().where(LeadRow.session_id == ChatSession.id)
        where.append(has_lead if f.lead else ~has_lead)
    if f.q:
        where.append(_any_message(Message.content.ilike(like_pattern(f.q), "\\")))
    return where


def page_statement(
    filters: ConversationFilter, limit: int, after: Cursor | None = None
) -> Select[*tuple[Any, ...]]:
    """Session ids and times of one page of the list, newest first."""
    when = last_at()
    statement = select(ChatSession.id, when.label("last_at")).where(*_conditions(filters, when))
    if after is not None:
        statement = statement.where(
            or_(
                when < after.last_at,
                and_(when == after.last_at, ChatSession.id < after.session_id),
            )
        )
    return statement.order_by(when.desc(), ChatSession.id.desc()).limit(limit)


def export_statement(
    filters: ConversationFilter, limit: int, after_id: str | None = None
) -> Select[*tuple[Any, ...]]:
    """Session ids of one export batch, in id order (the primary key: no sort of the table)."""
    when = last_at()
    statement = select(ChatSession.id, when.label("last_at")).where(*_conditions(filters, when))
    if after_id is not None:
        statement = statement.where(ChatSession.id > after_id)
    return statement.order_by(ChatSession.id).limit(limit)


def counts_statement(session_ids: list[str]) -> Select[*tuple[Any, ...]]:
    """Messages and unanswered answers per session, for one page's sessions."""
    return (
        select(
            Message.session_id,
            func.count(Message.id),
            func.sum(case((_found_nothing(), 1), else_=0)),
        )
        .where(Message.session_id.in_(session_ids))
        .group_by(Message.session_id)
    )


def ratings_statement(session_ids: list[str]) -> Select[*tuple[Any, ...]]:
    """Answers rated up and down per session, for one page's sessions."""
    return (
        select(
            Message.session_id,
            func.sum(case((Feedback.rating == "up", 1), else_=0)),
            func.sum(case((Feedback.rating == "down", 1), else_=0)),
        )
        .select_from(Feedback)
        .join(Message, Message.id == Feedback.message_id)
        .where(Message.session_id.in_(session_ids))
        .group_by(Message.session_id)
    )


def _rated(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return (
        exists()
        .where(Feedback.message_id == Message.id, Message.session_id == ChatSession.id)
        .where(*conditions)
    )


def _any_message(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Message.session_id == ChatSession.id, *conditions)
