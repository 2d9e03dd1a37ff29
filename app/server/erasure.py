"""Erasing conversations for good: the one place that knows every table holding a conversation's
data, so an erasure request, the retention task and `kbchat db prune` leave nothing behind.

A new table keyed by session or message adds its delete to `erase_sessions`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.server.db import ChatSession, Feedback, Handoff, LeadRow, Message

log = logging.getLogger(__name__)
BATCH = 500  # ids per statement: below SQLite's bound-parameter limit


def erase_sessions(db: Session, session_ids: Iterable[str]) -> int:
    """Delete these conversations and everything linked to them (their questions in the
    insights tables, messages, their feedback, leads, handoffs) in `db`'s transaction; returns
    how many conversations existed."""
    from app.server.insights import delete_for_sessions

    erased = 0
    for batch in _batches(list(dict.fromkeys(session_ids))):
        delete_for_sessions(db, batch)  # questions reference messages: first
        messages = select(Message.id).where(Message.session_id.in_(batch))
        db.execute(delete(Feedback).where(Feedback.message_id.in_(messages)))
        db.execute(delete(Message).where(Message.session_id.in_(batch)))
        db.execute(delete(LeadRow).where(LeadRow.session_id.in_(batch)))
        db.execute(delete(Handoff).where(Handoff.session_id.in_(batch)))
        result = db.execute(delete(ChatSession).where(ChatSession.id.in_(batch)))
        erased += int(getattr(result, "rowcount", 0) or 0)
    return erased


def prune_expired(engine: Engine, days: int, now: datetime | None = None) -> int:
    """Erase conversations whose last message (or start, without messages) is older than
    `days` days; returns the count. 0 days keeps everything. Safe to run on several replicas
    at once: a conversation another one erased first is simply not counted again."""
    if days <= 0:
        return 0
    cutoff = _naive_utc((now or datetime.now(UTC)) - timedelta(days=days))
    last = (
        select(Message.session_id, func.max(Message.created).label("last_at"))
        .group_by(Message.session_id)
        .subquery()
    )
    expired = (
        select(ChatSession.id)
        .outerjoin(last, last.c.session_id == ChatSession.id)
        .where(func.coalesce(last.c.last_at, ChatSession.created) < cutoff)
    )
    maker = sessionmaker(engine)
    total = 0
    while True:
        with maker.begin() as db:
            ids = list(db.scalars(expired.limit(BATCH)))
            if not ids:
                break
            total += erase_sessions(db, ids)
    if total:
        log.info("retention: erased %d conversations older than %d days", total, days)
    return total


def _batches(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _naive_utc(moment: datetime) -> datetime:
    """Stored times are UTC without a zone (SQLite keeps none); compare like with like."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
