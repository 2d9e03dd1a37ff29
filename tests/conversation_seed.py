"""Synthetic conversations for the operator's tests, stored through ConversationStore exactly as
the chat stores them (ChatResults built by hand: no model, no LLM)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.chat.types import ChatResult, Source
from app.server.db import ChatSession, ConversationStore, Handoff, LeadRow, Message, QuestionRow


def source(name: str = "returns.md", number: int = 1, url: str | None = None) -> Source:
    return Source(number, name, name, "en", 0.83, "passage text", url=url)


def answer(text: str, language: str = "en", *, found: bool = True) -> ChatResult:
    sources = [source(url="https://shop.test/returns")] if found else []
    return ChatResult(text, sources, language, "generative", found, cited=[1] if found else [])


def conversation(
    store: ConversationStore,
    question: str,
    language: str = "en",
    *,
    assistant: str | None = None,
    collection: str = "default",
    found: bool = True,
    reply: str = "Here is what I found [1].",
) -> tuple[str, int]:
    """A one-exchange conversation; returns its session id and its answer's id."""
    session = store.open_session(None, collection, assistant)
    answer_id = store.add_exchange(session, question, answer(reply, language, found=found))
    return session, answer_id


def backdate(store: ConversationStore, session_id: str, moment: datetime) -> None:
    """Pretend the conversation happened at `moment` (start and every message)."""
    with Session(store.engine) as db, db.begin():
        db.execute(update(ChatSession).where(ChatSession.id == session_id).values(created=moment))
        db.execute(update(Message).where(Message.session_id == session_id).values(created=moment))


def add_lead(store: ConversationStore, session_id: str, email: str, **fields: Any) -> None:
    with Session(store.engine) as db, db.begin():
        db.add(
            LeadRow(
                session_id=session_id,
                assistant_id=fields.get("assistant", "shop"),
                name=fields.get("name", "Ada"),
                email=email,
                consent_text="I agree.",
                language="en",
            )
        )


def add_handoff(store: ConversationStore, session_id: str, state: str = "waiting") -> None:
    with Session(store.engine) as db, db.begin():
        db.add(Handoff(session_id=session_id, state=state, reason="button"))


def add_question(store: ConversationStore, session_id: str) -> None:
    """The session's first question as the insights part files it (one cluster, any vector)."""
    with Session(store.engine) as db, db.begin():
        first = db.scalars(
            select(Message).where(Message.session_id == session_id, Message.role == "user")
        ).first()
        assert first is not None
        db.add(
            QuestionRow(
                message_id=first.id,
                session_id=session_id,
                collection="default",
                language=first.language or "en",
                cluster_id=1,
                vector=b"\x00\x00",
                created=first.created,
            )
        )
