"""The conversation list's SQL: filters, per-conversation aggregates and keyset pagination,
computed by the database in one statement (SQLite and Postgres alike), never row by row here.

A conversation's time is its last message's (its start, while it has none); the list runs
newest first, and the `next` cursor is that time and the session id of the page's last row."""

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


def _unanswered() -> ColumnElement[int]:
    """1 for an answer that found nothing: grounded false, or (rows before revision 0006,
    grounded NULL) no sources shown."""
    found_nothing = or_(
        Message.grounded.is_(False), and_(Message.grounded.is_(None), Message.sources == "[]")
    )
    return case((and_(Message.role == "assistant", found_nothing), 1), else_=0)


def list_statement(
    filters: ConversationFilter, limit: int, after: Cursor | None = None
) -> Select[*tuple[Any, ...]]:
    """One page of conversation summaries (aggregates only; page-sized extras come after)."""
    stats = (
        select(
            Message.session_id.label("session_id"),
            func.max(Message.created).label("last_at"),
            func.count(Message.id).label("messages"),
            func.sum(_unanswered()).label("unanswered"),
        )
        .group_by(Message.session_id)
        .subquery("stats")
    )
    ratings = (
        select(
            Message.session_id.label("session_id"),
            func.sum(case((Feedback.rating == "up", 1), else_=0)).label("up"),
            func.sum(case((Feedback.rating == "down", 1), else_=0)).label("down"),
        )
        .join(Message, Message.id == Feedback.message_id)
        .group_by(Message.session_id)
        .subquery("ratings")
    )
    last_at = func.coalesce(stats.c.last_at, ChatSession.created)
    up = func.coalesce(ratings.c.up, 0)
    down = func.coalesce(ratings.c.down, 0)
    unanswered = func.coalesce(stats.c.unanswered, 0)
    statement = (
        select(
            ChatSession.id,
            ChatSession.assistant,
            ChatSession.collection,
            ChatSession.created,
            last_at.label("last_at"),
            func.coalesce(stats.c.messages, 0).label("messages"),
            unanswered.label("unanswered"),
            up.label("up"),
            down.label("down"),
        )
        .outerjoin(stats, stats.c.session_id == ChatSession.id)
        .outerjoin(ratings, ratings.c.session_id == ChatSession.id)
    )
    f = filters
    if f.assistant is not None:
        statement = statement.where(ChatSession.assistant == f.assistant)
    if f.collection is not None:
        statement = statement.where(ChatSession.collection == f.collection)
    if f.language is not None:
        statement = statement.where(
            _any_message(Message.role == "user", Message.language == f.language)
        )
    if f.since is not None:
        statement = statement.where(last_at >= naive_utc(f.since))
    if f.until is not None:
        statement = statement.where(last_at < naive_utc(f.until))
    if f.rating == "up":
        statement = statement.where(up > 0)
    elif f.rating == "down":
        statement = statement.where(down > 0)
    elif f.rating == "none":
        statement = statement.where(up + down == 0)
    if f.unanswered is not None:
        statement = statement.where(unanswered > 0 if f.unanswered else unanswered == 0)
    if f.handed_over is not None:
        handed = exists().where(Handoff.session_id == ChatSession.id)
        statement = statement.where(handed if f.handed_over else ~handed)
    if f.lead is not None:
        has_lead = exists().where(LeadRow.session_id == ChatSession.id)
        statement = statement.where(has_lead if f.lead else ~has_lead)
    if f.q:
        statement = statement.where(_any_message(Message.content.ilike(like_pattern(f.q), "\\")))
    if after is not None:
        statement = statement.where(
            or_(
                last_at < after.last_at,
                and_(last_at == after.last_at, ChatSession.id < after.session_id),
            )
        )
    return statement.order_by(last_at.desc(), ChatSession.id.desc()).limit(limit)


def _any_message(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Message.session_id == ChatSession.id, *conditions)
