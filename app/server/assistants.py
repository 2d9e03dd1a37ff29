"""Assistants: named configurations (look, greeting, persona, knowledge base, model, caps) with
their own widget keys, stored in the conversations database (tables in app.server.db).

Widget keys are made here (secrets.token_urlsafe) and shown once; only their SHA-256 is kept, so
a copy of the database does not hand out working keys. The origins of every key are cached for
a few seconds for CORS, so another replica's new key works there within ORIGINS_TTL_S."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from app.chat.types import AnswerOptions
from app.server.assistant_schema import (
    MAX_KEYS,
    AssistantCreate,
    AssistantOut,
    AssistantPatch,
    AssistantSettings,
    KeyCreated,
    KeyOut,
)
from app.server.db import AssistantKeyRow, AssistantRow
from app.server.lead_webhook import WebhookRefused, check_target

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)
KEY_PREFIX = "kb_"
MAX_ASSISTANTS = 1000
MAX_PRESENTED_KEY = 256  # longer is no key of ours: not even hashed
ORIGINS_TTL_S = 10.0
PAGE_KEY_PREFIX = "page:"  # the key_id of an assistant's full page (real key ids: key_…)


class AssistantNotFound(LookupError):
    """No assistant (or key) with that id."""


class AssistantConflict(ValueError):
    """The id is taken, or a limit on how many there may be is reached."""


class InvalidAssistant(ValueError):
    """Valid fields that the server's settings refuse (a model outside the allow-list)."""


@dataclass(frozen=True)
class AssistantKey:
    """A presented widget key that belongs to an assistant: what the chat routes need."""

    assistant: str
    key_id: str
    origins: list[str]
    settings: AssistantSettings

    def answer_options(self, settings: Settings) -> AnswerOptions:
        """The persona, and the model while it is still allowed (the allow-list may shrink)."""
        model = self.settings.model
        if model is not None and model not in allowed_models(settings):
            log.warning("assistant %r: model %r is no longer allowed", self.assistant, model)
            model = None
        return AnswerOptions(persona=self.settings.instructions, model=model)


def allowed_models(settings: Settings) -> set[str]:
    return {settings.llm.model, *settings.llm.allowed_models}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Assistants:
    """Every read and write of assistants and their keys; the tables exist once the
    ConversationStore on the same engine has migrated it."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.settings = settings
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._origins: frozenset[str] = frozenset()
        self._origins_at = float("-inf")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ admin
    def create(self, body: AssistantCreate) -> AssistantOut:
        self._check(body)
        taken = AssistantConflict(f"an assistant with id {body.id!r} exists")
        try:
            with self._session.begin() as db:
                if db.get(AssistantRow, body.id) is not None:
                    raise taken
                count = db.scalar(select(func.count()).select_from(AssistantRow)) or 0
                if count >= MAX_ASSISTANTS:
                    raise AssistantConflict(f"at most {MAX_ASSISTANTS} assistants")
                config = AssistantSettings.model_validate(body.model_dump(exclude={"id"}))
                db.add(AssistantRow(id=body.id, config=config.model_dump_json()))
        except IntegrityError as exc:  # another replica created it meanwhile
            raise taken from exc
        return self.get(body.id)

    def get(self, assistant: str) -> AssistantOut:
        with self._session() as db:
            row = db.get(AssistantRow, assistant)
            if row is None:
                raise AssistantNotFound(f"no assistant {assistant!r}")
            keys = db.scalars(
                select(AssistantKeyRow)
                .where(AssistantKeyRow.assistant_id == assistant)
                .order_by(AssistantKeyRow.created, AssistantKeyRow.id)
            )
            return _out(row, [_key_out(k) for k in keys])

    def all(self) -> list[AssistantOut]:
        with self._session() as db:
            ids = list(db.scalars(select(AssistantRow.id).order_by(AssistantRow.id)))
        return [self.get(i) for i in ids]

    def replace(self, assistant: str, body: AssistantSettings) -> AssistantOut:
        self._check(body)
        with self._session.begin() as db:
            row = db.get(AssistantRow, assistant)
            if row is None:
                raise AssistantNotFound(f"no assistant {assistant!r}")
            row.config, row.updated = body.model_dump_json(), _now()
        return self.get(assistant)

    def update(self, assistant: str, patch: AssistantPatch) -> AssistantOut:
        """Raises pydantic's ValidationError when the merged settings are invalid."""
        current = self.get(assistant)
        merged = current.model_dump(include=set(AssistantSettings.model_fields))
        merged.update(patch.model_dump(exclude_unset=True))
        return self.replace(assistant, AssistantSettings.model_validate(merged))

    def delete(self, assistant: str) -> None:
        with self._session.begin() as db:
            row = db.get(AssistantRow, assistant)
            if row is None:
                raise AssistantNotFound(f"no assistant {assistant!r}")
            db.execute(delete(AssistantKeyRow).where(AssistantKeyRow.assistant_id == assistant))
            db.delete(row)
        self._forget_origins()

    def add_key(self, assistant: str, origins: list[str]) -> KeyCreated:
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        with self._session.begin() as db:
            if db.get(AssistantRow, assistant) is None:
                raise AssistantNotFound(f"no assistant {assistant!r}")
            count = db.scalar(select(func.count()).where(AssistantKeyRow.assistant_id == assistant))
            if (count or 0) >= MAX_KEYS:
                raise AssistantConflict(f"at most {MAX_KEYS} keys per assistant")
            row = AssistantKeyRow(
                id="key_" + secrets.token_hex(6),
                assistant_id=assistant,
                key_hash=key_hash(key),
                origins=json.dumps(sorted(set(origins))),
                created=_now(),
            )
            db.add(row)
        self._forget_origins()
        return KeyCreated(**_key_out(row).model_dump(), key=key)

    def delete_key(self, assistant: str, key_id: str) -> None:
        with self._session.begin() as db:
            row = db.get(AssistantKeyRow, key_id)
            if row is None or row.assistant_id != assistant:
                raise AssistantNotFound(f"no key {key_id!r} for assistant {assistant!r}")
            db.delete(row)
        self._forget_origins()

    def _check(self, body: AssistantSettings) -> None:
        if body.model is not None and body.model not in allowed_models(self.settings):
            raise InvalidAssistant(
                f"model {body.model!r} is not allowed: use KBCHAT_LLM_MODEL or add it to "
                "KBCHAT_LLM_ALLOWED_MODELS"
            )
        if body.leads.webhook_url:  # no webhook into this server's own network
            try:
                check_target(body.leads.webhook_url, self.settings.webhook_allow_private)
            except WebhookRefused as exc:
                raise InvalidAssistant(str(exc)) from exc

    # ----------------------------------------------------------------- public
    def by_key(self, key: str) -> AssistantKey | None:
        """The assistant a presented widget key belongs to; None for any other string."""
        if not key.startswith(KEY_PREFIX) or len(key) > MAX_PRESENTED_KEY:
            return None
        with self._session() as db:
            row = db.scalar(
                select(AssistantKeyRow).where(AssistantKeyRow.key_hash == key_hash(key))
            )
            if row is None:
                return None
            assistant = db.get(AssistantRow, row.assistant_id)
            if assistant is None:  # pragma: no cover - keys go with their assistant
                return None
            try:
                config = AssistantSettings.model_validate_json(assistant.config)
            except ValidationError:  # written by a newer version with stricter rules: refuse
                log.exception("assistant %r has invalid stored settings", assistant.id)
                return None
            return AssistantKey(assistant.id, row.id, json.loads(row.origins), config)

    def page(self, assistant: str) -> AssistantKey | None:
        """The assistant behind its full page at /a/{id}, as if the page held a key of its own
        (`page:{id}` counts its caps); None unless it exists and enabled `fullpage`."""
        if len(assistant) > 64:
            return None
        with self._session() as db:
            row = db.get(AssistantRow, assistant)
            if row is None:
                return None
            try:
                config = AssistantSettings.model_validate_json(row.config)
            except ValidationError:
                log.exception("assistant %r has invalid stored settings", row.id)
                return None
        if not config.fullpage:
            return None
        return AssistantKey(row.id, PAGE_KEY_PREFIX + row.id, [], config)

    def origins(self) -> frozenset[str]:
        """Every origin some assistant key allows (cached; see `origins_stale`)."""
        return self._origins

    def origins_stale(self) -> bool:
        return time.monotonic() - self._origins_at > ORIGINS_TTL_S

    def refresh_origins(self) -> None:
        """Blocking (a query): call from a worker thread. A failing database keeps the old set."""
        try:
            with self._session() as db:
                rows = db.scalars(select(AssistantKeyRow.origins))
                found = frozenset(o for r in rows for o in json.loads(r))
        except Exception:  # CORS must not fail the request; the chat route reports the DB
            log.warning("could not read the assistants' origins", exc_info=True)
            found = self._origins
        with self._lock:
            self._origins, self._origins_at = found, time.monotonic()

    def _forget_origins(self) -> None:
        with self._lock:
            self._origins_at = float("-inf")


def _utc(moment: datetime) -> datetime:
    """Stored in UTC; SQLite gives it back without its time zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _key_out(row: AssistantKeyRow) -> KeyOut:
    return KeyOut(id=row.id, origins=json.loads(row.origins), created=_utc(row.created))


def _out(row: AssistantRow, keys: list[KeyOut]) -> AssistantOut:
    config = json.loads(row.config)
    return AssistantOut(
        id=row.id, created=_utc(row.created), updated=_utc(row.updated), keys=keys, **config
    )
