"""Conversations, the sources shown with each answer, and feedback, in SQL (SQLite by default).

SQLAlchemy keeps one code path for SQLite on one machine and Postgres behind several replicas
(KBCHAT_DATABASE_URL). Nothing is kept in process memory, so a restart loses nothing. The models
here are what the code reads and writes; the tables are made by the Alembic revisions in
app/server/migrations (a schema change is a new revision there, checked against these models by
tests/test_migrations.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, func, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from app.chat.types import ChatResult, Turn
from app.server import schema
from app.server.database import make_engine
from app.server.redaction import redact_contacts


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ChatSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collection: Mapped[str] = mapped_column(String(512))
    created: Mapped[datetime] = mapped_column(default=_now)
    # The assistant (slug) it was started through; only that assistant may continue or read it
    assistant: Mapped[str | None] = mapped_column(String(64), index=True, default=None)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sources: Mapped[str] = mapped_column(Text, default="[]")  # JSON: the sources shown
    language: Mapped[str] = mapped_column(String(16), default="")
    mode: Mapped[str] = mapped_column(String(16), default="")
    created: Mapped[datetime] = mapped_column(default=_now)
    # A stable code (llm_incomplete, llm_timeout, ...) when the answer ends with the fallback.
    error: Mapped[str | None] = mapped_column(String(32), default=None)
    # Answers only (NULL for questions, operator replies and rows older than revision 0006):
    # whether any passage passed the relevance cut-off, and the [n] the answer cites (JSON list).
    grounded: Mapped[bool | None] = mapped_column(default=None)
    cited: Mapped[str | None] = mapped_column(Text, default=None)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    rating: Mapped[str] = mapped_column(String(8))  # "up" or "down"
    comment: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=_now)


class AssistantRow(Base):
    """An assistant (app.server.assistants): its slug, and its settings as one JSON document."""

    __tablename__ = "assistants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=_now)
    updated: Mapped[datetime] = mapped_column(default=_now)
    # Signs its lead webhooks (app.server.lead_webhook); kept readable: HMAC needs it
    webhook_secret: Mapped[str | None] = mapped_column(String(64), default=None)


class AssistantKeyRow(Base):
    """A widget key of an assistant: only its SHA-256 is kept (the key is shown once)."""

    __tablename__ = "assistant_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(ForeignKey("assistants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    origins: Mapped[str] = mapped_column(Text)  # JSON list of origins
    created: Mapped[datetime] = mapped_column(default=_now)


class LeadRow(Base):
    """A visitor's name and email for one conversation (app.server.leads), with the consent
    text they were shown and when they agreed. No foreign key to the assistant: like its
    conversations, its leads outlive a deleted assistant."""

    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True, unique=True)
    assistant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    consent_text: Mapped[str] = mapped_column(Text)
    consent_at: Mapped[datetime] = mapped_column(default=_now)
    language: Mapped[str] = mapped_column(String(35))
    created: Mapped[datetime] = mapped_column(default=_now)


class Handoff(Base):
    """A conversation handed to a person: `waiting` for an operator, `active` while one
    answers (the assistant stays quiet), `closed` once handed back. `reason`: the visitor's
    button, a phrase asking for a person, or the assistant's offer after failing to answer."""

    __tablename__ = "handoffs"
    __table_args__ = (  # one open handoff per conversation (revision 0008)
        Index(
            "ux_handoffs_open",
            "session_id",
            unique=True,
            sqlite_where=text("state IN ('waiting', 'active')"),
            postgresql_where=text("state IN ('waiting', 'active')"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)
    created: Mapped[datetime] = mapped_column(default=_now)
    accepted: Mapped[datetime | None] = mapped_column(default=None)
    closed: Mapped[datetime | None] = mapped_column(default=None)


class UnknownSession(LookupError):
    pass


@dataclass(frozen=True)
class SessionOwner:
    """Whose a stored conversation is: its knowledge base and its assistant (None: no assistant)."""

    collection: str
    assistant: str | None


@dataclass(frozen=True)
class TurnSession:
    """The session a chat turn belongs to. A `new` one is not stored yet: `add_exchange` stores
    it with the turn's question and answer, in one transaction, so a turn costs the database one
    write (SQLite has one writer at a time), and a turn that never finishes leaves no empty
    session behind."""

    id: str
    collection: str
    assistant: str | None
    new: bool


class ConversationStore:
    """Every read and write of conversations goes through here. Constructing it brings the
    database to the newest schema (safe when several replicas start at once). With `redact`
    (KBCHAT_REDACT_CONTACTS), emails and phone numbers in messages are replaced before they are
    written (app.server.redaction): every message write passes through `stored_text`."""

    def __init__(self, url: str, *, redact: bool = False) -> None:
        self.engine = make_engine(url)
        schema.upgrade(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.redact = redact

    def stored_text(self, text: str) -> str:
        """A message's text as it is stored: redacted when KBCHAT_REDACT_CONTACTS is on."""
        return redact_contacts(text) if self.redact else text

    def open_session(
        self, session_id: str | None, collection: str, assistant: str | None = None
    ) -> str:
        """Continue a known session or start one; an unknown id starts a new session. A known
        session of another assistant (or of one, for `assistant=None`, or of none, for an
        assistant) raises UnknownSession: holding its id is not enough to continue it."""
        with self._session.begin() as db:
            known = db.get(ChatSession, session_id) if session_id else None
            if known is not None:
                if known.assistant != assistant:
                    raise UnknownSession(session_id)
                return known.id
            new_id = uuid.uuid4().hex
            db.add(ChatSession(id=new_id, collection=collection, assistant=assistant))
            return new_id

    def turn_session(
        self, session_id: str | None, collection: str, assistant: str | None = None
    ) -> TurnSession:
        """Like `open_session`, but writes nothing: a known session is checked (UnknownSession
        when it is another assistant's), an unknown or absent id gets a fresh random id (never
        the caller's), stored by `add_exchange`."""
        if session_id:
            with self._session() as db:
                known = db.get(ChatSession, session_id)
                if known is not None:
                    if known.assistant != assistant:
                        raise UnknownSession(session_id)
                    return TurnSession(known.id, known.collection, known.assistant, new=False)
        return TurnSession(uuid.uuid4().hex, collection, assistant, new=True)

    def owner(self, session_id: str) -> SessionOwner | None:
        """The session's collection and assistant; None when there is no such session."""
        with self._session() as db:
            known = db.get(ChatSession, session_id)
            return None if known is None else SessionOwner(known.collection, known.assistant)

    def answers(self, session_id: str) -> int:
        """How many answers the session has stored (the `after` lead mode counts them)."""
        with self._session() as db:
            count = db.scalar(
                select(func.count(Message.id)).where(
                    Message.session_id == session_id, Message.role == "assistant"
                )
            )
            return int(count or 0)

    def history(self, session_id: str) -> list[Turn]:
        with self._session() as db:
            rows = db.scalars(
                select(Message).where(Message.session_id == session_id).order_by(Message.id)
            )
            return [Turn("user" if m.role == "user" else "assistant", m.content) for m in rows]

    def add_exchange(self, session: str | TurnSession, question: str, result: ChatResult) -> int:
        """Store the question and the answer with its sources (and the session, when it is a
        new `TurnSession`) in one transaction; returns the answer's id.

        Core inserts on one connection, not ORM objects: every chat turn writes here, and the
        ORM's unit of work cost about 1 ms of CPU a turn more for the same three rows."""
        session_id = session if isinstance(session, str) else session.id
        question_row = {
            "session_id": session_id,
            "role": "user",
            "content": self.stored_text(question),
            "language": result.language,
        }
        answer_row = {
            "session_id": session_id,
            "role": "assistant",
            "content": self.stored_text(result.answer),
            "sources": json.dumps([s.as_dict() for s in result.sources], ensure_ascii=False),
            "language": result.language,
            "mode": result.mode,
            "error": result.error,
            "grounded": result.grounded,
            "cited": json.dumps(result.cited),
        }
        with self.engine.begin() as conn:
            if isinstance(session, TurnSession) and session.new:
                # the session row before its messages (their foreign key)
                conn.execute(
                    insert(ChatSession),
                    {
                        "id": session.id,
                        "collection": session.collection,
                        "assistant": session.assistant,
                    },
                )
            conn.execute(insert(Message), question_row)
            return int(conn.execute(insert(Message).returning(Message.id), answer_row).scalar_one())

    def conversation(self, session_id: str) -> dict[str, Any]:
        with self._session() as db:
            session = db.get(ChatSession, session_id)
            if session is None:
                raise UnknownSession(session_id)
            rows = db.scalars(
                select(Message).where(Message.session_id == session_id).order_by(Message.id)
            )
            messages = []
            for m in rows:
                ratings = [
                    f.rating
                    for f in db.scalars(
                        select(Feedback).where(Feedback.message_id == m.id).order_by(Feedback.id)
                    )
                ]
                messages.append(
                    {
                        "id": m.id,
                        "role": m.role,
                        "content": m.content,
                        "sources": json.loads(m.sources),
                        "language": m.language,
                        "mode": m.mode,
                        "error": m.error,
                        "grounded": m.grounded,
                        "cited": json.loads(m.cited) if m.cited is not None else None,
                        "created": m.created.isoformat(),
                        "feedback": ratings[-1] if ratings else None,
                    }
                )
            return {
                "session_id": session.id,
                "collection": session.collection,
                "assistant": session.assistant,
                "created": session.created.isoformat(),
                "messages": messages,
            }

    def add_feedback(self, session_id: str, message_id: int, rating: str, comment: str = "") -> int:
        """Rate an answer of this session: holding the session id is what allows it, so message
        ids from other sessions are refused exactly like ids that do not exist."""
        with self._session.begin() as db:
            message = db.get(Message, message_id)
            if message is None or message.role != "assistant" or message.session_id != session_id:
                raise LookupError(f"no answer with id {message_id} in this session")
            feedback = Feedback(message_id=message_id, rating=rating, comment=comment)
            db.add(feedback)
            db.flush()
            return feedback.id

    def feedback_for(self, message_id: int) -> list[dict[str, Any]]:
        with self._session() as db:
            rows = db.scalars(select(Feedback).where(Feedback.message_id == message_id))
            return [{"rating": f.rating, "comment": f.comment} for f in rows]


class QuestionRow(Base):
    """A visitor's question (a user message) placed in a cluster of questions that mean the
    same, in any language (app.server.insights); its vector is the clustering one, float16."""

    __tablename__ = "questions"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    assistant: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    collection: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    cluster_id: Mapped[int] = mapped_column(index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    answer_id: Mapped[int | None] = mapped_column(default=None)  # the reply, once there is one
    created: Mapped[datetime] = mapped_column(index=True)  # the message's


class QuestionClusterRow(Base):
    """A cluster of questions: the running mean of its members' vectors (float32, not
    normalised), their count and languages, and its most central question."""

    __tablename__ = "question_clusters"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column()
    representative: Mapped[int | None] = mapped_column(default=None)  # a message id
    languages: Mapped[str] = mapped_column(Text, default="{}")  # JSON: language -> count
    updated: Mapped[datetime] = mapped_column(default=_now)
