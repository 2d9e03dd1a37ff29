"""Human handoff: a visitor (or the assistant's offer, or an operator) hands a conversation to a
person; while it is `waiting` or `active` the assistant stays quiet and the visitor's messages
are only stored; the operator replies (role "operator") and hands it back (`closed`).

Every operation is a method taking plain arguments, so the admin routes and the Gradio console
share them; the routes only check who may call. The clock is injected (tests fix the hour)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from app.server.db import AssistantRow, ChatSession, Handoff, Message
from app.server.redaction import redact_contacts

if TYPE_CHECKING:
    from app.server.assistant_schema import AssistantSettings
    from app.server.handoff_notify import HandoffNotifier
    from app.settings import Settings

log = logging.getLogger(__name__)
OPEN = ("waiting", "active")
T = TypeVar("T")


def _once_more_if_raced(work: Callable[[], T]) -> T:
    """Run one transaction again when another request (or replica) opened the session's handoff
    between our check and our insert: the unique index on open handoffs (revision 0008) refused
    ours, and the second run finds theirs."""
    try:
        return work()
    except IntegrityError:
        return work()


MAX_UPDATES = 100  # messages per poll; the widget asks again from the last id it got
MAX_QUEUE = 200
Reason = Literal["button", "phrase", "offer", "operator"]
State = Literal["waiting", "active", "closed"]


class NoHandoff(LookupError):
    """The conversation has no open handoff (or does not exist)."""


@dataclass(frozen=True)
class Started:
    """The visitor's answer to a handoff request: `offline` is a waiting handoff outside
    hours. `created`: a new handoff (False: the open one was returned)."""

    state: Literal["waiting", "active", "offline"]
    message: str
    handoff_id: int
    created: bool


@dataclass(frozen=True)
class QueueItem:
    id: int
    session_id: str
    assistant: str | None
    state: str
    reason: str
    language: str
    first_question: str
    created: datetime
    accepted: datetime | None
    closed: datetime | None
    contact_email: str | None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class HandoffTexts:
    """prompts/handoff_messages.json: per kind, per language, English as the fallback."""

    def __init__(self, prompts_dir: Path) -> None:
        self.texts: dict[str, dict[str, str]] = {
            k: v
            for k, v in json.loads(
                (prompts_dir / "handoff_messages.json").read_text(encoding="utf-8")
            ).items()
            if not k.startswith("_")
        }

    def get(self, kind: str, language: str, **fields: str) -> str:
        table = self.texts[kind]
        text = table.get(language) or table.get(language.split("-")[0]) or table["en"]
        return text.format(**fields) if fields else text


class Handoffs:
    """Every read and write of handoffs; notifications go to `notifier` (never blocking)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        notifier: HandoffNotifier | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session = sessionmaker(engine, expire_on_commit=False)
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.texts = HandoffTexts(settings.prompts_dir)

    # ------------------------------------------------------------------ visitor side
    def open_state(self, session_id: str | None) -> State | None:
        """The state of the session's open handoff (waiting/active), else None."""
        if not session_id:
            return None
        with self._session() as db:
            row = self._open(db, session_id)
            return None if row is None else row.state  # type: ignore[return-value]

    def request(
        self,
        session_id: str,
        assistant: str,
        config: AssistantSettings,
        reason: Reason,
        language: str | None = None,
    ) -> Started:
        """Start a handoff of an existing session (the caller checked it is the assistant's),
        or return the open one. The visitor's text is in `language` (default: the session's
        last question's, else the assistant's default language)."""
        now = self.clock()

        def start() -> tuple[Handoff, bool, str, str, str | None]:
            with self._session.begin() as db:
                if db.get(ChatSession, session_id) is None:
                    raise NoHandoff("no such session")
                row = self._open(db, session_id)
                created = row is None
                if row is None:
                    row = Handoff(
                        session_id=session_id, state="waiting", reason=reason, created=now
                    )
                    db.add(row)
                    db.flush()
                spoken = language or self._language(db, session_id) or config.default_language
                question = self._first_question(db, session_id)
                secret = db.scalar(
                    select(AssistantRow.webhook_secret).where(AssistantRow.id == assistant)
                )
                return row, created, spoken, question, secret

        row, created, language, question, secret = _once_more_if_raced(start)
        hours = config.handoff.hours
        offline = row.state == "waiting" and not hours.is_open(now)
        if offline:
            message = self._offline_message(config, language, now)
        else:
            message = self.texts.get("waiting", language)
        if created and self.notifier is not None:
            self.notifier.requested(
                assistant=assistant,
                config=config,
                secret=secret,
                payload={
                    "handoff_id": row.id,
                    "session_id": session_id,
                    "reason": reason,
                    "language": language,
                    "question": question,
                    "offline": offline,
                    "created": now.isoformat(),
                },
            )
        state: Literal["waiting", "active", "offline"] = "offline" if offline else row.state  # type: ignore[assignment]
        return Started(state, message, row.id, created)

    def set_email(self, session_id: str, email: str) -> None:
        """The visitor's email on the open handoff, for a reply after hours."""
        with self._session.begin() as db:
            row = self._open(db, session_id)
            if row is None:
                raise NoHandoff("no open handoff in this conversation")
            row.contact_email = email

    def _stored(self, text: str) -> str:
        """As the conversation store writes messages: redacted with KBCHAT_REDACT_CONTACTS."""
        return redact_contacts(text) if self.settings.redact_contacts else text

    def store_visitor_message(self, session_id: str, text: str, language: str = "") -> int:
        """A visitor's message during a handoff: stored for the operator, nobody answers it."""
        with self._session.begin() as db:
            message = Message(
                session_id=session_id, role="user", content=self._stored(text), language=language
            )
            db.add(message)
            db.flush()
            return message.id

    def store_notice(self, session_id: str, notice: str, language: str) -> int:
        """The localized notice answering a phrase that started the handoff, stored (mode
        "handoff") so the transcript shows it; its id goes to the widget as `message_id`, which
        the widget hands to /updates, so the notice is not shown twice."""
        with self._session.begin() as db:
            row = Message(
                session_id=session_id,
                role="assistant",
                content=notice,
                language=language,
                mode="handoff",
                cited="[]",
            )
            db.add(row)
            db.flush()
            return row.id

    def updates(self, session_id: str, after: int) -> dict[str, Any]:
        """Messages after id `after` that are not the visitor's own, and the latest handoff's
        state (None: never handed off)."""
        with self._session() as db:
            rows = db.scalars(
                select(Message)
                .where(
                    Message.session_id == session_id,
                    Message.id > after,
                    Message.role != "user",
                )
                .order_by(Message.id)
                .limit(MAX_UPDATES)
            )
            messages = [
                {
                    "id": int(m.id),
                    "role": m.role,
                    "content": m.content,
                    "created": _utc(m.created).isoformat(),  # type: ignore[union-attr]
                }
                for m in rows
            ]
            latest = db.scalar(
                select(Handoff).where(Handoff.session_id == session_id).order_by(Handoff.id.desc())
            )
        return {
            "messages": messages,
            "handoff": None if latest is None else {"state": latest.state},
        }

    def offer_due(self, session_id: str, config: AssistantSettings) -> bool:
        """True after `offer_after_unanswered` answers in a row found nothing (grounded false;
        for rows before revision 0006, no sources), while no handoff is open. A handoff notice
        or an operator's reply ends the streak."""
        n = config.handoff.offer_after_unanswered
        if not config.handoff.enabled or n <= 0:
            return False
        with self._session() as db:
            if self._open(db, session_id) is not None:
                return False
            rows = db.scalars(
                select(Message)
                .where(Message.session_id == session_id, Message.role != "user")
                .order_by(Message.id.desc())
                .limit(n)
            ).all()
        if len(rows) < n:
            return False
        return all(m.role == "assistant" and m.mode != "handoff" and not _grounded(m) for m in rows)

    # ----------------------------------------------------------------- operator side
    def queue(self, state: State | None = "waiting", limit: int = MAX_QUEUE) -> list[QueueItem]:
        """Handoffs in `state` (None: all), newest first, with what an operator needs."""
        with self._session() as db:
            query = select(Handoff, ChatSession.assistant).join(
                ChatSession, ChatSession.id == Handoff.session_id
            )
            if state is not None:
                query = query.where(Handoff.state == state)
            rows = db.execute(query.order_by(Handoff.id.desc()).limit(min(limit, MAX_QUEUE))).all()
            return [
                QueueItem(
                    id=h.id,
                    session_id=h.session_id,
                    assistant=assistant,
                    state=h.state,
                    reason=h.reason,
                    language=self._language(db, h.session_id) or "",
                    first_question=self._first_question(db, h.session_id),
                    created=_utc(h.created),  # type: ignore[arg-type]
                    accepted=_utc(h.accepted),
                    closed=_utc(h.closed),
                    contact_email=h.contact_email,
                )
                for h, assistant in rows
            ]

    def take_over(self, session_id: str) -> State:
        """An operator takes the conversation (asked for or not): the handoff is active."""
        now = self.clock()

        def take() -> State:
            with self._session.begin() as db:
                if db.get(ChatSession, session_id) is None:
                    raise NoHandoff("no such session")
                row = self._open(db, session_id)
                if row is None:
                    row = Handoff(
                        session_id=session_id, state="active", reason="operator", created=now
                    )
                    db.add(row)
                if row.state != "active":
                    row.state = "active"
                if row.accepted is None:
                    row.accepted = now
                return "active"

        return _once_more_if_raced(take)

    def reply(self, session_id: str, text: str) -> int:
        """The operator's message to the visitor (role "operator"); takes the conversation
        over first when nobody has. Returns the message id."""
        self.take_over(session_id)
        with self._session.begin() as db:
            message = Message(
                session_id=session_id, role="operator", content=self._stored(text), cited="[]"
            )
            db.add(message)
            db.flush()
            return message.id

    def hand_back(self, session_id: str) -> None:
        """Close the open handoff: the assistant answers again."""
        with self._session.begin() as db:
            row = self._open(db, session_id)
            if row is None:
                raise NoHandoff("no open handoff in this conversation")
            row.state, row.closed = "closed", self.clock()

    # ------------------------------------------------------------------------ helpers
    def _open(self, db: Any, session_id: str) -> Handoff | None:
        row: Handoff | None = db.scalar(
            select(Handoff)
            .where(Handoff.session_id == session_id, Handoff.state.in_(OPEN))
            .order_by(Handoff.id.desc())
        )
        return row

    def _language(self, db: Any, session_id: str) -> str | None:
        language: str | None = db.scalar(
            select(Message.language)
            .where(Message.session_id == session_id, Message.role == "user", Message.language != "")
            .order_by(Message.id.desc())
        )
        return language

    def _first_question(self, db: Any, session_id: str) -> str:
        text: str | None = db.scalar(
            select(Message.content)
            .where(Message.session_id == session_id, Message.role == "user")
            .order_by(Message.id)
        )
        return (text or "")[:500]

    def _offline_message(self, config: AssistantSettings, language: str, now: datetime) -> str:
        own = config.handoff.offline_message
        text = (
            own.get(language) or own.get(language.split("-")[0]) or own.get(config.default_language)
        )
        if text:
            return text
        opening = config.handoff.hours.next_opening(now)
        if opening is None:
            return self.texts.get("offline_later", language)
        when = opening.strftime("%Y-%m-%d %H:%M") + f" ({config.handoff.hours.timezone})"
        return self.texts.get("offline", language, when=when)


def _grounded(message: Message) -> bool:
    if message.grounded is not None:
        return bool(message.grounded)
    return message.sources not in ("", "[]")
