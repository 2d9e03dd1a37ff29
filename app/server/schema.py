"""Bring the conversations database to the newest schema (Alembic), safely from many replicas.

Every kbchat process runs this at start. Replicas started together must not race (create-all
did: one failed), so the whole check-stamp-upgrade runs under one lock: on PostgreSQL a
transaction-level advisory lock (released by the commit, even if the process dies), on SQLite a
file lock next to the database. The second process waits, then finds nothing to do.

A database made by create_all before Alembic (tables, no alembic_version) is adopted: stamped at
the revision its tables match, then upgraded, so no conversation is lost.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import OperationalError

from app.server.database import DatabaseUnavailableError, exclusive_transaction

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key: any fixed bigint; "kbchat" in ASCII, so it is recognisable in pg_locks
LOCK_TIMEOUT_S = 300  # a migration that holds the lock longer is stuck, not slow
# Alembic's `context` and `op` are module-level proxies: one migration at a time per process
_ALEMBIC = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: the shipped script folder, our connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for an empty or pre-Alembic database."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailableError.from_driver(exc) from exc


def upgrade(engine: Engine) -> None:
    """Adopt a pre-Alembic database if needed, then upgrade to head; idempotent."""
    try:
        with _ALEMBIC, _migration_lock(engine) as conn:
            legacy = _legacy_revision(conn)
            if legacy is not None:
                command.stamp(alembic_config(conn), legacy)
            command.upgrade(alembic_config(conn), "head")
    except OperationalError as exc:  # unreachable, wrong password, lock timeout, read-only file
        raise DatabaseUnavailableError.from_driver(exc) from exc


def _legacy_revision(conn: Connection) -> str | None:
    """The revision a create_all database (no alembic_version table) matches, else None."""
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    if "alembic_version" in tables or "messages" not in tables:
        return None
    columns = {c["name"] for c in inspector.get_columns("messages")}
    return "0002" if "error" in columns else "0001"


def _migration_lock(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """One migrating process of all replicas at a time (see `exclusive_transaction`)."""
    return exclusive_transaction(engine, "migrate", b"kbchat", LOCK_TIMEOUT_S)
