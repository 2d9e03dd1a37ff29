"""Wire one ingest (store, manifest, embedder -> FolderSync) under a per-collection lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from app.language_stats import refresh, stored
from app.query_correction import prepare
from app.store import (
    StoreError,
    collection_names,
    make_client,
    open_collection,
    update_metadata,
)
from ingestion.manifest import Manifest
from ingestion.sync import FolderSync, PassageEmbedder, Progress, SyncReport, plan_sync

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from app.settings import Settings


def ingest_folder(
    settings: Settings,
    root: Path,
    collection_name: str | None = None,
    *,
    embedder: PassageEmbedder | None = None,
    client: ClientAPI | None = None,
    reembed: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Sync `root` into the collection; refuses a collection embedded another way unless reembed."""
    name = collection_name or settings.collection
    if not root.is_dir():  # before anything is created, retargeted or (with reembed) dropped
        raise NotADirectoryError(f"{root.resolve()} is not a folder")
    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    chunk_meta = {
        "kbchat_chunk_tokens": settings.chunk.tokens,
        "kbchat_chunk_overlap": settings.chunk.overlap,
    }
    max_bytes = int(settings.ingest.max_file_mb * 2**20)
    lock_path = settings.data_dir / "locks" / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock_path, timeout=0):
            manifest = Manifest(settings.manifests_dir / f"{name}.sqlite")
            try:
                early = plan_sync(root, name, manifest.entries(), max_bytes)
                if (early.needs_model or reembed) and hasattr(embedder, "preload"):
                    embedder.preload()  # loads while Chroma starts up below
                client = client or make_client(settings)
                if reembed and name in collection_names(client):
                    client.delete_collection(name)
                collection = open_collection(client, name, embedder.spec, chunk_meta, create=True)
                source_dir = str(root.resolve())
                if (collection.metadata or {}).get("kbchat_source_dir") != source_dir:
                    update_metadata(collection, kbchat_source_dir=source_dir)
                sync = FolderSync(
                    collection,
                    manifest,
                    embedder,
                    chunk_tokens=settings.chunk.tokens,
                    chunk_overlap=settings.chunk.overlap,
                    chunk_min_tokens=settings.chunk.min_tokens,
                    max_bytes=max_bytes,
                    max_chars=settings.ingest.max_chars,
                    max_chunks=settings.ingest.max_chunks,
                    batch_chunks=settings.ingest.embed_batch_chunks,
                    write_batch=min(1000, client.get_max_batch_size()),
                    progress=progress,
                    sentence_vectors=settings.chunk.sentence_vectors,
                )
                plan = early if sync.bind() else sync.plan(root, name)
                report = sync.apply(plan)
                if (
                    report.chunks_written
                    or report.chunks_removed
                    or stored(collection, embedder.spec) is None
                ):  # the per-language means follow every change (app/language_stats.py)
                    means = refresh(collection, embedder.spec)
                    if means is not None:  # query correction's statistics, before any question
                        prepare(settings, embedder, means.counts)
                return report
            finally:
                manifest.close()
    except Timeout as exc:
        raise StoreError(f"another ingest into {name!r} is running (lock {lock_path})") from exc
