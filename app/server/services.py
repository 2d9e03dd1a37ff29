"""What the API routes, the widget and the Gradio UI share: one embedder, one store, one chain per
collection, the conversation database, and the admin operations. Built once per process."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.chat.types import AnswerOptions, ChatResult, Done, Token
from app.observability.metrics import Metrics
from app.server.db import ConversationStore, UnknownSession
from app.store import collection_names

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from langchain_core.language_models import BaseChatModel

    from app.chat.chain import ChatChain
    from app.embeddings.e5 import E5Embeddings
    from app.settings import Settings
    from ingestion.sync import SyncReport

log = logging.getLogger(__name__)
# A temp file left by a killed upload is removed at the next start once it is this old (seconds);
# younger ones may belong to an upload still running in another worker.
STALE_UPLOAD_SECONDS = 600
_SAFE_NAME = re.compile(r"^[^/\\\x00]{1,255}$")


class NotFound(LookupError):
    """A collection, session or document that does not exist."""


class BadRequest(ValueError):
    """Input the server refuses; the message says why."""


@dataclass(frozen=True)
class Completed:
    """The end of a chat turn: the result, stored under this session and message id."""

    result: ChatResult
    session_id: str
    message_id: int


class Services:
    """Constructed by the app factory; every part can be injected (tests, benchmarks)."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: E5Embeddings,
        client: ClientAPI,
        llm: BaseChatModel | None,
        conversations: ConversationStore,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.embedder = embedder
        self.client = client
        self.llm = llm
        self.conversations = conversations
        # each chain with the id of the collection it was built on (see `chain`)
        self._chains: dict[str, tuple[Any, ChatChain]] = {}
        self._lock = threading.Lock()
        self._sync_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ chat
    def chain(self, collection: str) -> ChatChain:
        """The collection's chain, built once and kept while the collection keeps its id.

        The id is asked of the store at every call (one short request): another replica may
        have deleted the collection, or deleted it and made a new one of the same name, and a
        chain bound to a vanished id fails every question."""
        from app.chat.factory import build_chat_chain

        current = self._collection_id(collection)
        with self._lock:
            built = self._chains.get(collection)
            if built is None or built[0] != current:
                chain = build_chat_chain(
                    self.settings,
                    collection,
                    embedder=self.embedder,
                    client=self.client,
                    llm=self.llm,
                )
                built = self._chains[collection] = (current, chain)
            return built[1]

    def _collection_id(self, collection: str) -> Any:
        try:
            return self.client.get_collection(collection, embedding_function=None).id
        except Exception:  # chromadb: NotFoundError, or an error for a name it cannot hold
            if collection in collection_names(self.client):  # the store failed, not the name
                raise
        with self._lock:
            self._chains.pop(collection, None)
        raise NotFound(f"no knowledge base named {collection!r}")

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        collection: str | None = None,
        deadline: float | None = None,
        options: AnswerOptions | None = None,
        assistant: str | None = None,
        chain: ChatChain | None = None,
    ) -> Iterator[Token | Completed]:
        """Stream one turn; the exchange is stored once the answer ends (with its error code
        when the LLM failed). `deadline`: a `time.monotonic()` instant; None: the chain's own.
        `options`: an assistant's persona and model, for the answer step. `assistant`: whose
        conversation this is; a session of another assistant is NotFound, like an unknown one.
        `chain`: the collection's, as `chain()` returned it for this turn moments ago (the API
        looks it up first, to answer 404 before streaming; looking it up again cost a store
        request per turn)."""
        name = collection or self.settings.collection
        chain = chain or self.chain(name)
        try:  # nothing is written before the answer: the turn is stored in one transaction
            session = self.conversations.turn_session(session_id, name, assistant)
        except UnknownSession as exc:
            raise NotFound("no such session") from exc
        history = [] if session.new else self.conversations.history(session.id)
        for event in self.metrics.observe_chat(
            chain.stream(message, history, deadline=deadline, options=options)
        ):
            if isinstance(event, Done):
                message_id = self.conversations.add_exchange(session, message, event.result)
                yield Completed(event.result, session.id, message_id)
            else:
                yield event

    def ask(
        self,
        message: str,
        *,
        session_id: str | None = None,
        collection: str | None = None,
        deadline: float | None = None,
        options: AnswerOptions | None = None,
        assistant: str | None = None,
        chain: ChatChain | None = None,
    ) -> Completed:
        events = self.chat(
            message,
            session_id=session_id,
            collection=collection,
            deadline=deadline,
            options=options,
            assistant=assistant,
            chain=chain,
        )
        for event in events:
            if isinstance(event, Completed):
                return event
        raise AssertionError("chat stream ended without a result")  # pragma: no cover

    # ----------------------------------------------------------- collections
    def collections(self) -> list[dict[str, Any]]:
        rows = []
        for c in sorted(self.client.list_collections(), key=lambda c: c.name):
            meta = c.metadata or {}
            rows.append(
                {
                    "name": c.name,
                    "chunks": c.count(),
                    "model": meta.get("kbchat_model"),
                    "folder": meta.get("kbchat_source_dir"),
                }
            )
        return rows

    def folder(self, collection: str) -> Path:
        """The collection's documents folder: where it was ingested from, else a managed one."""
        from app.settings import validate_collection_name

        validate_collection_name(collection)
        if collection in collection_names(self.client):
            meta = self.client.get_collection(collection).metadata or {}
            if meta.get("kbchat_source_dir"):
                return Path(str(meta["kbchat_source_dir"]))
        return self.settings.collections_dir / collection

    def sync(
        self, collection: str, progress: Callable[[int, int], None] | None = None
    ) -> SyncReport:
        """Sync the collection with its folder; syncs of one collection in this process wait
        for each other (the file lock in `ingest_folder` refuses other processes)."""
        from app.ingest import ingest_folder

        folder = self.folder(collection)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            sync_lock = self._sync_locks.setdefault(collection, threading.Lock())
        with sync_lock:
            report = ingest_folder(
                self.settings,
                folder,
                collection,
                embedder=self.embedder,
                client=self.client,
                progress=progress,
            )
        self.metrics.synced(report)
        with self._lock:
            self._chains.pop(collection, None)  # a new collection, or new metadata
        return report

    def require(self, collection: str) -> None:
        """NotFound unless the collection exists: a re-sync never creates one (a typo would
        otherwise become a new, public, empty knowledge base); uploads do create them."""
        if collection not in collection_names(self.client):
            raise NotFound(f"no knowledge base named {collection!r}")

    def delete_collection(self, collection: str) -> None:
        """Drop the collection, its manifest and, when it lives there, its folder under the
        managed collections folder (a folder it was ingested from elsewhere is the user's
        and is left alone). Refused (StoreError) while a sync of it runs, here or elsewhere."""
        from filelock import FileLock, Timeout

        from app.settings import validate_collection_name
        from app.store import StoreError

        validate_collection_name(collection)
        with self._lock:
            sync_lock = self._sync_locks.setdefault(collection, threading.Lock())
        if not sync_lock.acquire(blocking=False):
            raise StoreError(f"a sync of {collection!r} is running; try again when it ends")
        try:
            lock_path = self.settings.data_dir / "locks" / f"{collection}.lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(lock_path, timeout=0):
                self.require(collection)
                folder = self.folder(collection).resolve()
                self.client.delete_collection(collection)
                with self._lock:
                    self._chains.pop(collection, None)
                manifest = self.settings.manifests_dir / f"{collection}.sqlite"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{manifest}{suffix}").unlink(missing_ok=True)
                if folder == (self.settings.collections_dir / collection).resolve():
                    shutil.rmtree(folder, ignore_errors=True)
        except Timeout as exc:
            raise StoreError(f"another ingest into {collection!r} is running") from exc
        finally:
            sync_lock.release()

    def save_upload(self, collection: str, filename: str, data: bytes) -> Path:
        """Write one uploaded file into the collection's folder, never outside it.

        Written to a hidden temp file and renamed, so a scan (or a kill) never sees half a file,
        and an existing symbolic link of that name is replaced, never written through.
        """
        from ingestion.sync import TEMP_PREFIX

        folder = self.folder(collection).resolve()
        target = safe_child(folder, filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def recover(self) -> dict[str, SyncReport]:
        """Finish what a killed server left undone, for every collection with a folder here:
        remove stale upload temp files, then sync, which embeds files still marked pending,
        saved-but-unindexed uploads and any change made to the folder while it was down."""
        from ingestion.sync import TEMP_PREFIX

        reports: dict[str, SyncReport] = {}
        try:
            names = collection_names(self.client)
        except Exception:  # the store is down at start: /api/ready says so; nothing to finish
            log.warning("start-up re-sync skipped: the store is unreachable", exc_info=True)
            return reports
        for name in names:
            try:
                folder = self.folder(name)
                if not folder.is_dir():
                    continue
                for tmp in folder.glob(TEMP_PREFIX + "*"):
                    if time.time() - tmp.lstat().st_mtime > STALE_UPLOAD_SECONDS:
                        tmp.unlink(missing_ok=True)
                report = reports[name] = self.sync(name)
            except Exception:  # one broken collection must not stop the others, nor the server
                log.exception("start-up re-sync of collection %r failed", name)
                continue
            if report.added or report.updated or report.removed or report.failed:
                log.info(
                    "start-up re-sync of %r: %d added, %d updated, %d removed, %d failed",
                    name,
                    len(report.added),
                    len(report.updated),
                    len(report.removed),
                    len(report.failed),
                )
        return reports

    def delete_document(self, collection: str, document: str) -> SyncReport:
        folder = self.folder(collection).resolve()
        target = safe_child(folder, document, allow_subfolders=True)
        if not target.is_file():
            raise NotFound(f"no document {document!r} in {collection!r}")
        target.unlink()
        return self.sync(collection)

    def warm_up(self, stop: threading.Event | None = None) -> None:
        """Embed (or read from the data dir) what the first chat would otherwise wait for: the
        exemplars and the language statistics of every collection's languages; then build the
        default collection's chain (app.chat.warmup). Run in a background thread at start,
        once the model is loaded (the start's own imports come first); `stop` ends the wait for
        it (a shutdown while a model that failed to load is awaited)."""
        from app.chat.warmup import warm_up
        from app.language_stats import stored

        stop = stop or threading.Event()
        while not getattr(self.embedder, "loaded", True):
            if stop.wait(0.05):
                return
        try:
            languages: set[str] = set()
            for name in collection_names(self.client):
                collection = self.client.get_collection(name, embedding_function=None)
                means = stored(collection, self.embedder.spec)
                languages |= set(means.counts) if means is not None else set()
            warm_up(self.settings, self.embedder, sorted(languages))
            if self.settings.collection in collection_names(self.client):
                self.chain(self.settings.collection)
        except Exception:  # the first chat pays for it instead, and reports what is wrong
            log.warning("warming up for the first chat failed", exc_info=True)

    def ready(self) -> dict[str, Any]:
        """Model loaded and store reachable: what a load balancer should wait for."""
        checks: dict[str, Any] = {"model": bool(getattr(self.embedder, "loaded", True))}
        try:
            self.client.heartbeat()
            checks["store"] = True
        except Exception:  # the detail (hosts, paths) is for the log, not for anonymous callers
            log.warning("store heartbeat failed", exc_info=True)
            checks["store"] = False
            checks["store_error"] = "unreachable"
        checks["ready"] = checks["model"] and checks["store"]
        return checks


def safe_child(folder: Path, name: str, *, allow_subfolders: bool = False) -> Path:
    """Resolve `name` inside `folder`; refuse anything that would land elsewhere or be hidden."""
    parts = Path(name.replace("\\", "/")).parts
    if (
        not name
        or not _SAFE_NAME.match(name.replace("/", "_") if allow_subfolders else name)
        or Path(name).is_absolute()
        or any(p in {"..", "."} or p.startswith(".") for p in parts)
        or (not allow_subfolders and len(parts) != 1)
    ):
        raise BadRequest(f"invalid file name {name!r}")
    target = (folder / Path(*parts)).resolve()
    if not target.is_relative_to(folder):
        raise BadRequest(f"invalid file name {name!r}")
    return target
