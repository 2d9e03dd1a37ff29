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
CREATE TABLE IF NOT EXISTS problems (
    source TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('failed', 'skipped')),
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    source: str
    hash: str
    state: str
    chunks: int


@dataclass(frozen=True)
class FileStatus:
    """What the operator's document list shows for one file (see `Manifest.statuses`)."""

    source: str
    state: str  # "done", "pending", or the last sync's "failed" / "skipped"
    chunks: int
    language: str | None  # the document's detected language; None before it was recorded
    updated: float | None  # when its chunks were last written (epoch seconds)
    reason: str = ""  # why the last sync failed or skipped it


class Manifest:
    """One SQLite file per collection; every change is committed at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit: each write is durable
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(files)")}
        if "language" not in columns:  # manifests written before the document list
            self.db.execute("ALTER TABLE files ADD COLUMN language TEXT")

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
                "INSERT INTO files (source, hash, state, chunks, updated) VALUES (?, ?, ?, ?, ?)",
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
            "INSERT OR REPLACE INTO files (source, hash, state, chunks, updated)"
            " VALUES (?, ?, 'pending', 0, ?)",
            (source, file_hash, time.time()),
        )

    def mark_done(self, source: str, file_hash: str, chunks: int, language: str = "") -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files (source, hash, state, chunks, updated, language)"
            " VALUES (?, ?, 'done', ?, ?, ?)",
            (source, file_hash, chunks, time.time(), language or None),
        )

    def finish_sync(self, problems: list[tuple[str, str, str]]) -> None:
        """Record a whole sync's (source, kind, reason) problems and its time. A sync scans the
        whole folder and retries every file not done, so its problems replace the last ones."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM problems")
            self.db.executemany("INSERT OR REPLACE INTO problems VALUES (?, ?, ?)", problems)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_sync', ?)", (str(time.time()),)
            )

    def set_languages(self, languages: dict[str, str]) -> None:
        """Fill in languages found elsewhere (the store) for files recorded without one."""
        self.db.executemany(
            "UPDATE files SET language = ? WHERE source = ? AND language IS NULL",
            [(language, source) for source, language in languages.items()],
        )

    def last_sync(self) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='last_sync'").fetchone()
        return float(row[0]) if row else None

    def statuses(self) -> list[FileStatus]:
        """Every file the manifest knows or the last sync could not index, by name. A file
        whose new version failed keeps its old chunks: it shows as failed, with them."""
        files = {
            r[0]: FileStatus(r[0], r[1], r[2], r[3], r[4])
            for r in self.db.execute("SELECT source, state, chunks, language, updated FROM files")
        }
        for source, kind, reason in self.db.execute("SELECT source, kind, reason FROM problems"):
            known = files.get(source)
            files[source] = FileStatus(
                source,
                kind,
                known.chunks if known else 0,
                known.language if known else None,
                known.updated if known else None,
                reason,
            )
        return [files[k] for k in sorted(files)]

    def remove(self, source: str) -> None:
        self.db.execute("DELETE FROM files WHERE source = ?", (source,))
