"""Lead capture: a visitor's name and email, stored with their conversation (one lead per
session), the consent text they agreed to, and a signed webhook to the operator.

The visitor never waits for the webhook: it is queued (app.server.lead_webhook) after the lead
is committed. The webhook secret is made here, shown once to the admin, and kept readable in the
assistants table because signing needs it."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from app.server.db import AssistantRow, ChatSession, LeadRow

if TYPE_CHECKING:
    from app.server.assistants import AssistantKey
    from app.server.lead_webhook import LeadWebhooks

log = logging.getLogger(__name__)
MAX_LIST = 1000


class LeadExists(ValueError):
    """This conversation already has a lead."""


class NoLeadCapture(LookupError):
    """The assistant does not ask for leads, or the session is not one of its conversations."""


class LeadOut(BaseModel):
    id: int
    session_id: str
    assistant: str
    name: str
    email: EmailStr
    language: str
    consent_text: str = Field(description="The consent text the visitor saw and ticked.")
    consent_at: datetime
    created: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _out(row: LeadRow) -> LeadOut:
    return LeadOut(
        id=row.id,
        session_id=row.session_id,
        assistant=row.assistant_id,
        name=row.name,
        email=row.email,
        language=row.language,
        consent_text=row.consent_text,
        consent_at=_utc(row.consent_at),
        created=_utc(row.created),
    )


class Leads:
    """Every read and write of leads and webhook secrets; deliveries go to `webhooks`."""

    def __init__(self, engine: Engine, webhooks: LeadWebhooks) -> None:
        self._session = sessionmaker(engine, expire_on_commit=False)
        self.webhooks = webhooks

    def capture(
        self,
        key: AssistantKey,
        collection: str,
        session_id: str | None,
        name: str,
        email: str,
        language: str,
    ) -> LeadOut:
        """Store the lead (a new conversation when `session_id` is None), then queue the
        webhook. The consent text stored is the one the widget showed for `language`."""
        config = key.settings.leads
        if config.mode == "off":
            raise NoLeadCapture("this assistant does not collect contact details")
        shown = language if language in config.consent else key.settings.default_language
        consent_text = config.consent.get(shown) or next(iter(config.consent.values()))
        try:
            with self._session.begin() as db:
                if session_id is None:
                    session_id = secrets.token_hex(16)
                    db.add(
                        ChatSession(id=session_id, collection=collection, assistant=key.assistant)
                    )
                else:  # only a conversation of this assistant (`after`: it has answers)
                    session = db.get(ChatSession, session_id)
                    if (
                        session is None
                        or session.collection != collection
                        or session.assistant != key.assistant
                    ):
                        raise NoLeadCapture("no such session")
                    if db.scalar(select(LeadRow.id).where(LeadRow.session_id == session_id)):
                        raise LeadExists("this conversation already has contact details")
                now = _now()
                row = LeadRow(
                    session_id=session_id,
                    assistant_id=key.assistant,
                    name=name,
                    email=email,
                    consent_text=consent_text,
                    consent_at=now,
                    language=shown,
                    created=now,
                )
                db.add(row)
                db.flush()
                secret = db.scalar(
                    select(AssistantRow.webhook_secret).where(AssistantRow.id == key.assistant)
                )
        except IntegrityError as exc:  # the same session, sent twice at once
            raise LeadExists("this conversation already has contact details") from exc
        lead = _out(row)
        if config.webhook_url:
            if secret:
                self.webhooks.send(config.webhook_url, secret, payload(lead))
            else:
                log.warning("assistant %r has a webhook URL but no secret yet", key.assistant)
                self.webhooks.on_outcome("failed")
        return lead

    def has_lead(self, session_id: str | None, assistant: str) -> bool:
        if not session_id:
            return False
        with self._session() as db:
            found = db.scalar(
                select(LeadRow.id).where(
                    LeadRow.session_id == session_id, LeadRow.assistant_id == assistant
                )
            )
            return found is not None

    def of_assistant(self, assistant: str, limit: int = 100) -> list[LeadOut]:
        """Newest first."""
        with self._session() as db:
            rows = db.scalars(
                select(LeadRow)
                .where(LeadRow.assistant_id == assistant)
                .order_by(LeadRow.id.desc())
                .limit(min(limit, MAX_LIST))
            )
            return [_out(r) for r in rows]

    def new_secret(self, assistant: str) -> str | None:
        """A new webhook secret for the assistant (the old one stops working); None: no such
        assistant."""
        secret = "whsec_" + secrets.token_hex(24)
        with self._session.begin() as db:
            row = db.get(AssistantRow, assistant)
            if row is None:
                return None
            row.webhook_secret = secret
        return secret


def payload(lead: LeadOut) -> dict[str, str]:
    """The webhook's JSON body (README: "Lead webhooks"); `type` as every event has it
    (app.server.lead_webhook.event_payload), `event` as it always had."""
    return {
        "type": "lead.created",
        "event": "lead.created",
        "assistant": lead.assistant,
        "session_id": lead.session_id,
        "name": lead.name,
        "email": lead.email,
        "language": lead.language,
        "created": lead.created.isoformat(),
    }
