"""What has been fully written for each file of a collection, kept in SQLite beside the store.

The order of writes makes a kill at any moment harmless: a file is marked `pending` before any of
its chunks reach Chroma and `done` only after its new chunks are in and its old ones are gone.
Chunk ids are derived from (source, content hash, index), so redoing a pending file overwrites
the same ids instead of adding duplicates.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    chunks INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    source: str
    hash: str
    state: str
    chunks: int


class Manifest:
    """One SQLite file per collection; every change is committed at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit: each write is durable
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def collection_id(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='collection_id'").fetchone()
        return row[0] if row else None

    def bind(self, collection_id: str, entries: list[Entry] | None = None) -> None:
        """Start over for a new (or recreated) collection, optionally seeded from the store."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM files")
            self.db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                [(e.source, e.hash, e.state, e.chunks, time.time()) for e in entries or []],
            )
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('collection_id', ?)", (collection_id,)
            )

    def entries(self) -> dict[str, Entry]:
        rows = self.db.execute("SELECT source, hash, state, chunks FROM files")
        return {r[0]: Entry(*r) for r in rows}

    def mark_pending(self, source: str, file_hash: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, 'pending', 0, ?)",
            (source, file_hash, time.time()),
        )

    def mark_done(self, source: str, file_hash: str, chunks: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, 'done', ?, ?)",
            (source, file_hash, chunks, time.time()),
        )

    def remove(self, source: str) -> None:
        self.db.execute("DELETE FROM files WHERE source = ?", (source,))
