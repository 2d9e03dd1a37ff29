"""The operator's view of a knowledge base: its documents with language, chunks, size, when
they were written and, for the ones the last sync could not index, why.

The manifest (ingestion/manifest.py) knows each file's state, chunk count and language, and the
last sync's problems; the folder gives sizes. Manifests written before languages were recorded
are filled in once from the chunks' metadata in the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ingestion.manifest import Manifest

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from app.server.services import Services

BACKFILL_PAGE = 5000
Status = Literal["indexed", "pending", "failed", "skipped"]
STATUS: dict[str, Status] = {"done": "indexed", "pending": "pending", "failed": "failed"}


class DocumentOut(BaseModel):
    source: str = Field(description="Path relative to the knowledge base's folder.")
    status: Status = Field(
        description="failed/skipped: the last sync could not index it (see `reason`); a "
        "document whose new version failed keeps its earlier chunks."
    )
    reason: str = ""
    chunks: int
    language: str | None
    size: int | None = Field(description="Bytes on disk; null when the file is gone.")
    updated: datetime | None = Field(description="When its chunks were last written.")


class DocumentList(BaseModel):
    collection: str
    last_sync: datetime | None
    documents: list[DocumentOut]


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _size(folder: Path, source: str) -> int | None:
    """The file's size, never following a link or leaving the folder (sources come from our
    own scan, but the folder may have changed since)."""
    path = folder / source
    try:
        if not path.resolve().is_relative_to(folder) or path.is_symlink():
            return None
        stat = path.lstat()
    except (OSError, ValueError):
        return None
    return stat.st_size


def _store_languages(collection: Collection, wanted: set[str]) -> dict[str, str]:
    """The language of each wanted source, read from its chunks' metadata (one pass)."""
    found: dict[str, str] = {}
    offset = 0
    while wanted - found.keys():
        got = collection.get(include=["metadatas"], limit=BACKFILL_PAGE, offset=offset)
        metas = got["metadatas"] or []
        for meta in metas:
            source = str(meta.get("source", ""))
            if source in wanted and source not in found and meta.get("language"):
                found[source] = str(meta["language"])
        if len(metas) < BACKFILL_PAGE:
            break
        offset += BACKFILL_PAGE
    return found


def list_documents(services: Services, collection: str) -> DocumentList:
    """NotFound (from `services.require`) for a knowledge base that does not exist."""
    services.require(collection)
    folder = services.folder(collection).resolve()
    manifest = Manifest(services.settings.manifests_dir / f"{collection}.sqlite")
    try:
        statuses = manifest.statuses()
        missing = {s.source for s in statuses if s.language is None and s.chunks}
        if missing:
            store = services.client.get_collection(collection, embedding_function=None)
            filled = _store_languages(store, missing)
            manifest.set_languages(filled)
            statuses = manifest.statuses()
        last_sync = manifest.last_sync()
    finally:
        manifest.close()
    return DocumentList(
        collection=collection,
        last_sync=_when(last_sync),
        documents=[
            DocumentOut(
                source=s.source,
                status=STATUS.get(s.state, "skipped"),
                reason=s.reason,
                chunks=s.chunks,
                language=s.language,
                size=_size(folder, s.source),
                updated=_when(s.updated),
            )
            for s in statuses
        ],
    )
