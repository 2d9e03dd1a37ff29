"""The conversations database's engine, from KBCHAT_DATABASE_URL: SQLite or PostgreSQL only.

The two backends the migrations are tested on. A plain `postgresql://` URL means psycopg 3 (the
`kbchat[postgres]` extra), not SQLAlchemy's default psycopg2. Every error names the setting but
never repeats the URL, which holds the password.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_EXPECTED = "sqlite:///path/to/file.sqlite3 or postgresql+psycopg://user:password@host:5432/db"
_PG_DRIVERS = {"", "psycopg", "psycopg2"}


class DatabaseConfigError(ValueError):
    """KBCHAT_DATABASE_URL cannot be used; the message is safe to show (no password)."""


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached or refused us; the message is the driver's first line
    (host, port, user: never the password)."""

    @classmethod
    def from_driver(cls, exc: BaseException) -> DatabaseUnavailableError:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return cls(
            "conversations database (KBCHAT_DATABASE_URL) unavailable: "
            + (reason[0] if reason else type(exc).__name__)
        )


def database_url(raw: str) -> URL:
    """Parse and normalise the URL: `postgres(ql)://` becomes `postgresql+psycopg://`."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseConfigError(
            f"KBCHAT_DATABASE_URL is not a database URL; expected {_EXPECTED}"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        return url
    if backend in {"postgres", "postgresql"} and driver in _PG_DRIVERS:
        driver = driver or "psycopg"
        if importlib.util.find_spec(driver) is None:
            raise DatabaseConfigError(
                f"KBCHAT_DATABASE_URL is a PostgreSQL URL but the {driver} driver is not "
                "installed: pip install 'kbchat[postgres]' (or ./scripts/setup.sh postgres)"
            )
        return url.set(drivername=f"postgresql+{driver}")
    raise DatabaseConfigError(
        f"KBCHAT_DATABASE_URL: unsupported database {url.drivername!r}; expected {_EXPECTED}"
    )


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory databases and other backends)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def make_engine(raw_url: str) -> Engine:
    url = database_url(raw_url)
    if (path := sqlite_file(url)) is None:
        return create_engine(url, pool_pre_ping=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "connect", _write_ahead_log)
    return engine


def _write_ahead_log(dbapi_connection: Any, _: Any) -> None:
    """SQLite in WAL mode: a commit appends to the log and syncs it once (the rollback journal
    is written, synced and deleted at every commit, about 3x the time on the test machine),
    and readers no longer wait for the writer. Every chat turn writes, so this sets how many
    turns a second one SQLite file takes. synchronous=FULL: a committed turn survives a power
    cut too. The mode is stored in the file; setting it again on each connection is free."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


@contextlib.contextmanager
def exclusive_transaction(
    engine: Engine, name: str, key: bytes, timeout: float
) -> Iterator[Connection]:
    """One connection in one transaction, held by one process of all replicas at a time until
    it commits: on PostgreSQL a transaction-level advisory lock on `key` (up to 7 ASCII bytes,
    recognisable in pg_locks; released by the commit, even if the process dies), on SQLite a
    file lock `<database>.<name>.lock`."""
    path = sqlite_file(engine.url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(timeout)}s'"))
            lock = int.from_bytes(key, "big")
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
            yield conn
    elif path is not None:
        with FileLock(f"{path}.{name}.lock", timeout=timeout), engine.begin() as conn:
            yield conn
    else:  # in-memory SQLite: nobody else can see it
        with engine.begin() as conn:
            yield conn
