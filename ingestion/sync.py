"""Make a collection mirror a folder: embed what is new or changed, drop what is gone.

Unchanged files (same content hash) cost a read and a hash, never an embedding; with nothing to
do, no model is loaded at all. Files are parsed and chunked one by one, but embedded in batches
across files so the model sees full batches.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingestion.chunking import Chunk, TokenChunker
from ingestion.language import detect_language
from ingestion.loaders import (
    SUPPORTED_EXTENSIONS,
    BrokenFile,
    LoadedDocument,
    SkippedFile,
    load_file,
)
from ingestion.manifest import Entry, Manifest

if TYPE_CHECKING:
    import numpy as np
    from chromadb.api.models.Collection import Collection
    from tokenizers import Tokenizer

    from app.embeddings.e5 import EmbeddingSpec
    from app.embeddings.profiles import PrefixProfile

Progress = Callable[[int, int], None]  # (files done, files to process)


class PassageEmbedder(Protocol):
    """What ingestion needs from an embedding model (E5Embeddings, or a fake in tests)."""

    profile: PrefixProfile

    @property
    def spec(self) -> EmbeddingSpec: ...
    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def max_tokens(self) -> int: ...
    def encode_passages(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class FileProblem:
    source: str
    reason: str


@dataclass
class SyncReport:
    collection: str
    root: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[FileProblem] = field(default_factory=list)
    skipped: list[FileProblem] = field(default_factory=list)
    chunks_written: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chunks_per_second": round(self.chunks_per_second, 2)}


@dataclass
class _Pending:
    source: str
    file_hash: str
    doc: LoadedDocument
    language: str
    chunks: list[Chunk]
    kind: str  # "added" or "updated"


def chunk_id(source: str, file_hash: str, index: int) -> str:
    return hashlib.sha256(f"{source}\0{file_hash}\0{index}".encode()).hexdigest()[:40]


def scan_folder(root: Path) -> tuple[list[Path], list[FileProblem]]:
    """Candidate files in a stable order; hidden entries and unsupported types are reported."""
    files: list[Path] = []
    skipped: list[FileProblem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith("."):
                skipped.append(FileProblem(_rel(here / name, root) + "/", "hidden folder"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = here / name
            ext = path.suffix.lower()
            if name.startswith("."):
                skipped.append(FileProblem(_rel(path, root), "hidden file"))
            elif not path.is_file():
                skipped.append(FileProblem(_rel(path, root), "not a regular file"))
            elif ext not in SUPPORTED_EXTENSIONS:
                what = f"'{ext}'" if ext else "(no extension)"
                skipped.append(FileProblem(_rel(path, root), f"unsupported file type {what}"))
            else:
                files.append(path)
    return files, skipped


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def entries_from_store(collection: Collection) -> list[Entry]:
    """Rebuild a lost manifest: a file is done when all of its chunks of one version are there."""
    seen: dict[str, dict[str, Any]] = {}
    offset, page = 0, 5000
    while True:
        got = collection.get(include=["metadatas"], limit=page, offset=offset)
        metas = got["metadatas"] or []
        for meta in metas:
            info = seen.setdefault(str(meta["source"]), {"hashes": set(), "n": 0, "want": 0})
            info["hashes"].add(str(meta["file_hash"]))
            info["n"] += 1
            info["want"] = int(str(meta.get("chunk_count", 0) or 0))
        if len(metas) < page:
            break
        offset += page
    out = []
    for source, info in seen.items():
        complete = len(info["hashes"]) == 1 and info["n"] == info["want"]
        file_hash = next(iter(info["hashes"])) if len(info["hashes"]) == 1 else "mixed"
        out.append(Entry(source, file_hash, "done" if complete else "pending", info["n"]))
    return out


class FolderSync:
    """One sync run of one folder into one collection (constructor-injected parts)."""

    def __init__(
        self,
        collection: Collection,
        manifest: Manifest,
        embedder: PassageEmbedder,
        *,
        chunk_tokens: int,
        chunk_overlap: int,
        max_bytes: int,
        batch_chunks: int = 512,
        write_batch: int = 1000,
        progress: Progress | None = None,
    ) -> None:
        self.collection = collection
        self.manifest = manifest
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.max_bytes = max_bytes
        self.batch_chunks = batch_chunks
        self.write_batch = write_batch
        self.progress = progress
        self._chunker: TokenChunker | None = None

    @property
    def chunker(self) -> TokenChunker:
        if self._chunker is None:
            self._chunker = TokenChunker(
                self.embedder.tokenizer,
                max_tokens=self.embedder.max_tokens,
                passage_prefix=self.embedder.profile.passage_prefix,
                chunk_tokens=self.chunk_tokens,
                overlap=self.chunk_overlap,
            )
        return self._chunker

    def run(self, root: Path, collection_name: str) -> SyncReport:
        started = time.perf_counter()
        root = root.resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        report = SyncReport(collection_name, str(root))
        if self.manifest.collection_id() != self.collection.id.hex:
            self.manifest.bind(self.collection.id.hex, entries_from_store(self.collection))
        entries = self.manifest.entries()
        files, report.skipped = scan_folder(root)
        todo: list[tuple[Path, str, str, str]] = []
        present: set[str] = set()
        for path in files:
            source = _rel(path, root)
            present.add(source)
            try:
                size = path.stat().st_size
                if size > self.max_bytes:
                    limit = self.max_bytes / 2**20
                    report.failed.append(FileProblem(source, f"larger than {limit:g} MB"))
                    continue
                file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                report.failed.append(FileProblem(source, f"cannot read: {exc.strerror or exc}"))
                continue
            entry = entries.get(source)
            if entry and entry.state == "done" and entry.hash == file_hash:
                report.unchanged += 1
                continue
            kind = "updated" if entry and entry.state == "done" else "added"
            todo.append((path, source, file_hash, kind))
        for source in sorted(set(entries) - present):
            report.chunks_removed += self._delete({"source": source})
            self.manifest.remove(source)
            report.removed.append(source)
        self._process(todo, report)
        report.seconds = time.perf_counter() - started
        return report

    def _process(self, todo: list[tuple[Path, str, str, str]], report: SyncReport) -> None:
        batch: list[_Pending] = []
        for done, (path, source, file_hash, kind) in enumerate(todo, 1):
            item = self._prepare(path, source, file_hash, kind, report)
            if item is not None:
                self.manifest.mark_pending(source, file_hash)
                batch.append(item)
                if sum(len(p.chunks) for p in batch) >= self.batch_chunks:
                    self._flush(batch, report)
                    batch = []
            if self.progress:
                self.progress(done, len(todo))
        self._flush(batch, report)

    def _prepare(
        self, path: Path, source: str, file_hash: str, kind: str, report: SyncReport
    ) -> _Pending | None:
        try:
            doc = load_file(path, self.max_bytes)
            chunks = self.chunker.split(doc)
        except SkippedFile as exc:
            report.skipped.append(FileProblem(source, exc.reason))
            return None
        except BrokenFile as exc:
            report.failed.append(FileProblem(source, exc.reason))
            return None
        except Exception as exc:  # a parser bug on one file must not stop the whole ingest
            report.failed.append(FileProblem(source, f"unexpected error: {exc!r}"))
            return None
        if not chunks:
            report.failed.append(FileProblem(source, "no extractable text"))
            return None
        language = detect_language("\n".join(s.text for s in doc.sections))
        return _Pending(source, file_hash, doc, language, chunks, kind)

    def _flush(self, batch: list[_Pending], report: SyncReport) -> None:
        if not batch:
            return
        texts = [c.text for p in batch for c in p.chunks]
        vectors = self.embedder.encode_passages(texts)
        report.embedded += len(texts)
        row = 0
        for item in batch:
            n = len(item.chunks)
            self._write(item, vectors[row : row + n])
            row += n
            report.chunks_removed += self._delete(
                {"$and": [{"source": item.source}, {"file_hash": {"$ne": item.file_hash}}]}
            )
            self.manifest.mark_done(item.source, item.file_hash, n)
            report.chunks_written += n
            getattr(report, item.kind).append(item.source)

    def _write(self, item: _Pending, vectors: np.ndarray) -> None:
        metas: list[Mapping[str, Any]] = []
        for c in item.chunks:
            meta: dict[str, Any] = {
                "source": item.source,
                "title": item.doc.title,
                "language": item.language,
                "file_hash": item.file_hash,
                "chunk_index": c.index,
                "chunk_count": len(item.chunks),
                "tokens": c.tokens,
                "section": c.section,
            }
            if c.page is not None:
                meta["page"] = c.page
            metas.append(meta)
        ids = [chunk_id(item.source, item.file_hash, c.index) for c in item.chunks]
        for start in range(0, len(ids), self.write_batch):
            end = start + self.write_batch
            self.collection.upsert(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                documents=[c.text for c in item.chunks[start:end]],
                metadatas=metas[start:end],
            )

    def _delete(self, where: dict[str, Any]) -> int:
        ids = self.collection.get(where=where, include=[])["ids"]
        if ids:
            self.collection.delete(ids=ids)
        return len(ids)
