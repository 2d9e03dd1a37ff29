"""Make a collection mirror a folder: embed what is new or changed, drop what is gone.

Unchanged files (same content hash) cost a read and a hash, never an embedding; with nothing to
do, no model is loaded at all. Files are parsed and chunked one by one, but embedded in batches
across files so the model sees full batches.

What is read: regular files under the root only. Symbolic links are never followed, to files or
folders, wherever they point: a link leading outside the folder would expose files the admin did
not mean to publish, and a link inside would index the same text twice (or loop); the target of
an inside link is ingested under its own name anyway. Every link, unreadable folder, FIFO or
device is listed in the report's `skipped` with the reason. File names that are not valid UTF-8
are indexed under an escaped name (``bad\\xffname.txt``) so every stored source is valid text.
Each file is read once: its hash and its text come from the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingestion.chunking import DEFAULT_MIN_TOKENS, Chunk, TokenChunker
from ingestion.language import declared_language, detect_language
from ingestion.loaders import (
    DEFAULT_MAX_CHARS,
    SUPPORTED_EXTENSIONS,
    BrokenFile,
    LoadedDocument,
    LoaderError,
    SkippedFile,
    load_bytes,
    read_file,
)
from ingestion.manifest import Entry, Manifest
from ingestion.sentences import META_KEY as SENTENCE_KEY
from ingestion.sentences import pack, sentence_texts, token_counter

if TYPE_CHECKING:
    import numpy as np
    from chromadb.api.models.Collection import Collection
    from tokenizers import Tokenizer

    from app.embeddings.e5 import EmbeddingSpec
    from app.embeddings.profiles import PrefixProfile

Progress = Callable[[int, int], None]  # (files done, files to process)
# Uploads are written under this hidden name, then renamed: a scan never sees half a file.
TEMP_PREFIX = ".kbchat-upload-"
DEFAULT_MAX_CHUNKS = 2000


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
    truncated: list[FileProblem] = field(default_factory=list)  # indexed, but cut short
    notes: list[FileProblem] = field(default_factory=list)  # indexed, with a guess to check
    chunks_written: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    sentences_embedded: int = 0  # sentence vectors kept with their chunks (ingestion/sentences.py)
    model_loaded: bool = False
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chunks_per_second": round(self.chunks_per_second, 2)}


@dataclass
class SyncPlan:
    """What a sync will do: files to (re)embed and sources to drop."""

    report: SyncReport
    started: float
    entries: dict[str, Entry]
    todo: list[tuple[Path, str, str, str]] = field(default_factory=list)  # path, source, hash, kind
    gone: list[str] = field(default_factory=list)

    @property
    def needs_model(self) -> bool:
        return bool(self.todo)


@dataclass
class _Pending:
    source: str
    file_hash: str
    doc: LoadedDocument
    language: str
    chunks: list[Chunk]
    kind: str  # "added" or "updated"
    known: bool = True


def chunk_id(source: str, file_hash: str, index: int) -> str:
    return hashlib.sha256(f"{source}\0{file_hash}\0{index}".encode()).hexdigest()[:40]


def scan_folder(root: Path) -> tuple[list[Path], list[FileProblem]]:
    """Candidate files in a stable order; links, hidden entries and other types are reported."""
    files: list[Path] = []
    skipped: list[FileProblem] = []

    def unreadable(exc: OSError) -> None:
        where = _rel(Path(exc.filename), root) if exc.filename else "."
        skipped.append(FileProblem(where + "/", f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):  # never follows links
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            path = here / name
            if name.startswith("."):
                skipped.append(FileProblem(_rel(path, root) + "/", "hidden folder"))
            elif path.is_symlink():
                skipped.append(FileProblem(_rel(path, root) + "/", _link_reason(path, root)))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = here / name
            ext = path.suffix.lower()
            if name.startswith(TEMP_PREFIX):
                continue  # an upload still being written; it is renamed when complete
            if name.startswith("."):
                skipped.append(FileProblem(_rel(path, root), "hidden file"))
            elif path.is_symlink():
                skipped.append(FileProblem(_rel(path, root), _link_reason(path, root)))
            elif not path.is_file():
                skipped.append(FileProblem(_rel(path, root), "not a regular file"))
            elif ext not in SUPPORTED_EXTENSIONS:
                what = f"'{ext}'" if ext else "(no extension)"
                skipped.append(FileProblem(_rel(path, root), f"unsupported file type {what}"))
            else:
                files.append(path)
    return files, skipped


def _link_reason(path: Path, root: Path) -> str:
    """Why a symbolic link is skipped; the target itself is not named (it may be private)."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop
        return "symbolic link that is broken or loops: not followed"
    if not target.is_relative_to(root):
        return "symbolic link to outside the knowledge-base folder: not followed"
    return "symbolic link inside the knowledge-base folder: not followed (target indexed itself)"


def _rel(path: Path, root: Path) -> str:
    """The source name: the path below the root, with bytes that are not UTF-8 escaped."""
    rel = path.relative_to(root).as_posix()
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


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


def plan_sync(
    root: Path, collection_name: str, entries: dict[str, Entry], max_bytes: int
) -> SyncPlan:
    """Scan and hash the folder and compare with the manifest; needs neither model nor store."""
    started = time.perf_counter()
    root = root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    report = SyncReport(collection_name, str(root))
    files, report.skipped = scan_folder(root)
    plan = SyncPlan(report, started, entries)
    present: set[str] = set()
    for path in files:
        source = _rel(path, root)
        present.add(source)
        if source != path.relative_to(root).as_posix():
            report.notes.append(FileProblem(source, "file name is not valid UTF-8: escaped"))
        try:
            file_hash = hashlib.sha256(read_file(path, max_bytes)).hexdigest()
        except SkippedFile as exc:  # replaced by a link or a FIFO since the scan
            report.skipped.append(FileProblem(source, exc.reason))
            continue
        except LoaderError as exc:
            report.failed.append(FileProblem(source, exc.reason))
            continue
        entry = entries.get(source)
        if entry and entry.state == "done" and entry.hash == file_hash:
            report.unchanged += 1
            continue
        kind = "updated" if entry and entry.state == "done" else "added"
        plan.todo.append((path, source, file_hash, kind))
    plan.gone = sorted(set(entries) - present)
    return plan


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
        chunk_min_tokens: int = DEFAULT_MIN_TOKENS,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        batch_chunks: int = 512,
        write_batch: int = 1000,
        progress: Progress | None = None,
        sentence_vectors: bool = True,
    ) -> None:
        """`sentence_vectors`: also embed each chunk's sentences for ranking (see
        ingestion/sentences.py); off, chunks are ranked by their own vector only."""
        self.collection = collection
        self.manifest = manifest
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.chunk_min_tokens = chunk_min_tokens
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.max_chunks = max_chunks
        self.batch_chunks = batch_chunks
        self.write_batch = write_batch
        self.progress = progress
        self.sentence_vectors = sentence_vectors
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
                min_tokens=self.chunk_min_tokens,
            )
        return self._chunker

    def run(self, root: Path, collection_name: str) -> SyncReport:
        """Plan against the manifest (rebuilt from the store if it is not this collection's), then
        apply. Callers that want to preload the model can call `plan` and `apply` themselves."""
        self.bind()
        return self.apply(self.plan(root, collection_name))

    def bind(self) -> bool:
        """Make the manifest describe this collection; False if it had to be rebuilt."""
        if self.manifest.collection_id() == self.collection.id.hex:
            return True
        self.manifest.bind(self.collection.id.hex, entries_from_store(self.collection))
        return False

    def plan(self, root: Path, collection_name: str) -> SyncPlan:
        return plan_sync(root, collection_name, self.manifest.entries(), self.max_bytes)

    def apply(self, plan: SyncPlan) -> SyncReport:
        report = plan.report
        for source in plan.gone:
            report.chunks_removed += self._delete({"source": source})
            self.manifest.remove(source)
            report.removed.append(source)
        self._process(plan.todo, plan.entries, report)
        files = [p for p in report.skipped if not p.source.endswith("/")]  # not folders
        self.manifest.finish_sync(
            [(p.source, "failed", p.reason) for p in report.failed]
            + [(p.source, "skipped", p.reason) for p in files]
        )
        report.seconds = time.perf_counter() - plan.started
        return report

    def _process(
        self,
        todo: list[tuple[Path, str, str, str]],
        entries: dict[str, Entry],
        report: SyncReport,
    ) -> None:
        batch: list[_Pending] = []
        for done, item in enumerate(self._parse_ahead(todo, report), 1):
            if item is not None and (chunked := self._chunk(item, report)) is not None:
                self.manifest.mark_pending(chunked.source, chunked.file_hash)
                chunked.known = chunked.source in entries  # a new file has no older chunks
                batch.append(chunked)
                if sum(len(p.chunks) for p in batch) >= self.batch_chunks:
                    self._flush(batch, report)
                    batch = []
            if self.progress:
                self.progress(done, len(todo))
        self._flush(batch, report)

    def _parse_ahead(
        self, todo: list[tuple[Path, str, str, str]], report: SyncReport
    ) -> Iterator[_Pending | None]:
        """Parse (and detect languages) ahead, up to a bound, while a preloading model loads."""
        ahead: deque[_Pending | None] = deque()
        for path, source, file_hash, kind in todo:
            ahead.append(self._parse(path, source, file_hash, kind, report))
            if len(ahead) < 256 and not getattr(self.embedder, "loaded", True):
                continue
            while ahead:
                yield ahead.popleft()
        yield from ahead

    def _parse(
        self, path: Path, source: str, file_hash: str, kind: str, report: SyncReport
    ) -> _Pending | None:
        try:
            data = read_file(path, self.max_bytes)
            file_hash = hashlib.sha256(data).hexdigest()  # this version's, if it changed since
            name = os.fsencode(path.name).decode("utf-8", "backslashreplace")  # title fallback
            doc = load_bytes(data, name, self.max_chars)
        except SkippedFile as exc:
            report.skipped.append(FileProblem(source, exc.reason))
            return None
        except BrokenFile as exc:
            report.failed.append(FileProblem(source, exc.reason))
            return None
        except Exception as exc:  # a parser bug on one file must not stop the whole ingest
            report.failed.append(FileProblem(source, f"unexpected error: {exc!r}"))
            return None
        del data
        if doc.cut:
            report.truncated.append(FileProblem(source, doc.cut))
        report.notes += [FileProblem(source, note) for note in doc.notes]
        language = declared_language(doc.language) or detect_language(
            "\n".join(s.text for s in doc.sections)
        )
        return _Pending(source, file_hash, doc, language, [], kind)

    def _chunk(self, item: _Pending, report: SyncReport) -> _Pending | None:
        try:
            result = self.chunker.split_capped(item.doc, self.max_chunks)
            item.chunks = result.chunks
            if result.cut:
                report.truncated.append(
                    FileProblem(item.source, f"kept the first {self.max_chunks} chunks")
                )
        except Exception as exc:  # e.g. a tokenizer error on strange input: report, go on
            report.failed.append(FileProblem(item.source, f"unexpected error: {exc!r}"))
            return None
        if not item.chunks:
            report.failed.append(FileProblem(item.source, "no extractable text"))
            return None
        return item

    def _flush(self, batch: list[_Pending], report: SyncReport) -> None:
        """Embed a batch in one pass, write it, then retire old versions file by file."""
        if not batch:
            return
        texts = [c.text for p in batch for c in p.chunks]
        vectors = self.embedder.encode_passages(texts)
        report.embedded += len(texts)
        report.model_loaded = True
        ids = [chunk_id(p.source, p.file_hash, c.index) for p in batch for c in p.chunks]
        metas = [self._metadata(p, c) for p in batch for c in p.chunks]
        if self.sentence_vectors:
            languages = [p.language for p in batch for c in p.chunks]
            report.sentences_embedded += self._add_sentences(texts, languages, metas)
        for start in range(0, len(ids), self.write_batch):
            end = start + self.write_batch
            self.collection.upsert(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                documents=texts[start:end],
                metadatas=metas[start:end],
            )
        for item in batch:
            if item.known:  # an earlier version, or a killed earlier attempt, may have chunks
                report.chunks_removed += self._delete(
                    {"$and": [{"source": item.source}, {"file_hash": {"$ne": item.file_hash}}]}
                )
            self.manifest.mark_done(item.source, item.file_hash, len(item.chunks), item.language)
            report.chunks_written += len(item.chunks)
            getattr(report, item.kind).append(item.source)

    def _add_sentences(
        self, texts: list[str], languages: list[str], metas: list[Mapping[str, Any]]
    ) -> int:
        """Embed the chunks' sentences in one pass; each chunk's go into its metadata."""
        tokens = token_counter(self.embedder.tokenizer)
        split = [sentence_texts(t, lang, tokens) for t, lang in zip(texts, languages, strict=True)]
        flat = [s for sentences in split for s in sentences]
        if not flat:
            return 0
        vectors = self.embedder.encode_passages(flat)
        start = 0
        for i, sentences in enumerate(split):
            if sentences:
                end = start + len(sentences)
                metas[i] = {**metas[i], SENTENCE_KEY: pack(vectors[start:end])}
                start = end
        return len(flat)

    @staticmethod
    def _metadata(item: _Pending, chunk: Chunk) -> Mapping[str, Any]:
        meta: dict[str, Any] = {
            "source": item.source,
            "title": item.doc.title,
            "language": item.language,
            "file_hash": item.file_hash,
            "chunk_index": chunk.index,
            "chunk_count": len(item.chunks),
            "tokens": chunk.tokens,
            "section": chunk.section,
        }
        if chunk.page is not None:
            meta["page"] = chunk.page
        if item.doc.url:  # Chroma refuses None values: no key when the document has no address
            meta["url"] = item.doc.url
        return meta

    def _delete(self, where: dict[str, Any]) -> int:
        ids = self.collection.get(where=where, include=[])["ids"]
        if ids:
            self.collection.delete(ids=ids)
        return len(ids)
