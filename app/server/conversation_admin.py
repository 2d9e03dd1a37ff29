"""The operator's view of stored conversations: the filtered list, one transcript, the export's
batches, erasure on request and retention. Every operation takes plain arguments, so the HTTP
routes (app.server.routes_conversations) and the Gradio console call the same code."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from app.server.conversation_query import (
    ConversationFilter,
    Cursor,
    as_utc,
    counts_statement,
    export_statement,
    page_statement,
    ratings_statement,
)
from app.server.db import ChatSession, Feedback, Handoff, LeadRow, Message
from app.server.erasure import erase_sessions, prune_expired

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)
MAX_LIMIT = 200
FIRST_QUESTION_CHARS = 200
HandoffState = Literal["waiting", "active", "closed"]


class ConversationSummary(BaseModel):
    session_id: str
    assistant: str | None = Field(description="Its assistant's id; null: none (plain API).")
    collection: str
    created: datetime
    last_at: datetime = Field(description="Its last message's time (its start, without any).")
    messages: int
    languages: list[str] = Field(description="The languages its questions were asked in.")
    first_question: str = Field(description=f"Its first {FIRST_QUESTION_CHARS} characters.")
    up: int = Field(description="Answers rated up.")
    down: int = Field(description="Answers rated down.")
    unanswered: int = Field(description="Answers that found nothing in the knowledge base.")
    handed_over: HandoffState | None = Field(description="Its latest handoff's state, if any.")
    has_lead: bool


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next: str | None = Field(description="Pass as `cursor` for the next page; null: the last.")


class SourceOut(BaseModel):
    number: int | None = None
    source: str = ""
    title: str = ""
    url: str | None = None
    language: str = ""
    score: float | None = None
    page: int | None = None
    section: str = ""


class FeedbackOut(BaseModel):
    rating: str
    comment: str
    created: datetime


class MessageOut(BaseModel):
    id: int
    role: str = Field(description="user, assistant or operator.")
    content: str
    language: str
    mode: str
    created: datetime
    sources: list[SourceOut]
    cited: list[int] | None
    grounded: bool | None = Field(description="Answers: passages passed the cut-off.")
    error: str | None
    feedback: list[FeedbackOut]


class LeadInfo(BaseModel):
    name: str
    email: str
    language: str
    consent_text: str
    consent_at: datetime


class HandoffOut(BaseModel):
    id: int
    state: HandoffState
    reason: str
    contact_email: str | None
    created: datetime
    accepted: datetime | None
    closed: datetime | None


class Transcript(BaseModel):
    session_id: str
    assistant: str | None
    collection: str
    created: datetime
    messages: list[MessageOut]
    lead: LeadInfo | None
    handoffs: list[HandoffOut]


@dataclass(frozen=True)
class ExportBatch:
    """Up to a page of conversations with all their messages, for the streamed export."""

    conversations: list[ConversationSummary]
    messages: dict[str, list[MessageOut]]


class ConversationAdmin:
    """Reads and erases conversations for the operator (admin key on the HTTP side)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._session = sessionmaker(engine, expire_on_commit=False)

    def list_conversations(
        self, filters: ConversationFilter, limit: int = 50, cursor: Cursor | None = None
    ) -> ConversationPage:
        """A page of conversations, newest last message first."""
        limit = max(1, min(limit, MAX_LIMIT))
        with self._session() as db:
            rows = db.execute(page_statement(filters, limit + 1, cursor)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            items = self._summaries(db, rows)
        following = Cursor(rows[-1].last_at, rows[-1].id).encode() if more and rows else None
        return ConversationPage(items=items, next=following)

    def transcript(self, session_id: str) -> Transcript | None:
        """The whole conversation; None when there is no such session."""
        with self._session() as db:
            session = db.get(ChatSession, session_id)
            if session is None:
                return None
            messages = self._messages(db, [session_id]).get(session_id, [])
            lead = db.scalar(select(LeadRow).where(LeadRow.session_id == session_id))
            handoffs = db.scalars(
                select(Handoff).where(Handoff.session_id == session_id).order_by(Handoff.id)
            )
            return Transcript(
                session_id=session.id,
                assistant=session.assistant,
                collection=session.collection,
                created=as_utc(session.created),
                messages=messages,
                lead=None
                if lead is None
                else LeadInfo(
                    name=lead.name,
                    email=lead.email,
                    language=lead.language,
                    consent_text=lead.consent_text,
                    consent_at=as_utc(lead.consent_at),
                ),
                handoffs=[_handoff(h) for h in handoffs],
            )

    def export(self, filters: ConversationFilter, batch: int = MAX_LIMIT) -> Iterator[ExportBatch]:
        """The matching conversations in batches, in session id order (a batch and its messages
        at a time, each in its own short transaction), so an export never holds the whole table
        in memory and no long read blocks the chat's writes."""
        after: str | None = None
        while True:
            with self._session() as db:
                rows = db.execute(export_statement(filters, batch, after)).all()
                if not rows:
                    return
                summaries = self._summaries(db, rows)
                messages = self._messages(db, [r.id for r in rows])
            yield ExportBatch(summaries, messages)
            if len(rows) < batch:
                return
            after = rows[-1].id

    def erase(self, session_id: str) -> bool:
        """Erase one conversation and everything linked to it; False when it did not exist."""
        with self._session.begin() as db:
            erased = erase_sessions(db, [session_id])
        log.info("erasure: erased %d conversation on request", erased)
        return erased > 0

    def erase_by_email(self, email: str) -> int:
        """Erase every conversation whose lead gave this email (case-insensitive); the count."""
        with self._session.begin() as db:
            ids = list(
                db.scalars(
                    select(LeadRow.session_id).where(
                        func.lower(LeadRow.email) == email.strip().lower()
                    )
                )
            )
            erased = erase_sessions(db, ids)
        log.info("erasure: erased %d conversations of one lead's email on request", erased)
        return erased

    def prune(self) -> int:
        """Erase conversations older than KBCHAT_RETENTION_DAYS (0: none); the count."""
        return prune_expired(self.engine, self.settings.retention_days)

    def _summaries(self, db: Any, rows: Sequence[Any]) -> list[ConversationSummary]:
        """Rows (id, last_at) of a page, completed with a few grouped queries for the page."""
        ids = [r.id for r in rows]
        if not ids:
            return []
        sessions = {s.id: s for s in db.scalars(select(ChatSession).where(ChatSession.id.in_(ids)))}
        counts = {sid: (n, unanswered) for sid, n, unanswered in db.execute(counts_statement(ids))}
        ratings = {sid: (up, down) for sid, up, down in db.execute(ratings_statement(ids))}
        languages: dict[str, set[str]] = {}
        for session_id, language in db.execute(
            select(Message.session_id, Message.language)
            .where(Message.session_id.in_(ids), Message.role == "user", Message.language != "")
            .distinct()
        ):
            languages.setdefault(session_id, set()).add(language)
        first_ids = (
            select(func.min(Message.id))
            .where(Message.session_id.in_(ids), Message.role == "user")
            .group_by(Message.session_id)
        )
        first = dict(
            db.execute(
                select(
                    Message.session_id, func.substr(Message.content, 1, FIRST_QUESTION_CHARS)
                ).where(Message.id.in_(first_ids))
            ).all()
        )
        handoffs: dict[str, str] = {}
        for session_id, state in db.execute(
            select(Handoff.session_id, Handoff.state)
            .where(Handoff.session_id.in_(ids))
            .order_by(Handoff.id)
        ):
            handoffs[session_id] = state  # the latest wins
        leads = set(db.scalars(select(LeadRow.session_id).where(LeadRow.session_id.in_(ids))))
        return [
            ConversationSummary(
                session_id=r.id,
                assistant=sessions[r.id].assistant,
                collection=sessions[r.id].collection,
                created=as_utc(sessions[r.id].created),
                last_at=as_utc(r.last_at),
                messages=counts.get(r.id, (0, 0))[0],
                languages=sorted(languages.get(r.id, ())),
                first_question=first.get(r.id) or "",
                up=ratings.get(r.id, (0, 0))[0],
                down=ratings.get(r.id, (0, 0))[1],
                unanswered=counts.get(r.id, (0, 0))[1],
                handed_over=handoffs.get(r.id),
                has_lead=r.id in leads,
            )
            for r in rows
        ]

    def _messages(self, db: Any, ids: list[str]) -> dict[str, list[MessageOut]]:
        feedback: dict[int, list[FeedbackOut]] = {}
        for message_id, rating, comment, created in db.execute(
            select(Feedback.message_id, Feedback.rating, Feedback.comment, Feedback.created)
            .join(Message, Message.id == Feedback.message_id)
            .where(Message.session_id.in_(ids))
            .order_by(Feedback.id)
        ):
            feedback.setdefault(message_id, []).append(
                FeedbackOut(rating=rating, comment=comment, created=as_utc(created))
            )
        out: dict[str, list[MessageOut]] = {}
        columns = Message.__table__.columns  # plain rows: no ORM identity map for an export
        for m in db.execute(
            select(*columns).where(Message.session_id.in_(ids)).order_by(Message.id)
        ):
            out.setdefault(m.session_id, []).append(_message(m, feedback.get(m.id, [])))
        return out


def _message(m: Any, feedback: list[FeedbackOut]) -> MessageOut:
    return MessageOut(
        id=m.id,
        role=m.role,
        content=m.content,
        language=m.language,
        mode=m.mode,
        created=as_utc(m.created),
        sources=[SourceOut.model_validate(s) for s in _json_list(m.sources)],
        cited=_json_list(m.cited) if m.cited is not None else None,
        grounded=m.grounded,
        error=m.error,
        feedback=feedback,
    )


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _handoff(h: Handoff) -> HandoffOut:
    return HandoffOut(
        id=h.id,
        state=h.state,
        reason=h.reason,
        contact_email=h.contact_email,
        created=as_utc(h.created),
        accepted=as_utc(h.accepted) if h.accepted else None,
        closed=as_utc(h.closed) if h.closed else None,
    )
