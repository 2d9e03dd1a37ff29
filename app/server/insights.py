"""Learn from the conversations: every visitor question embedded once, clustered by meaning
across languages, and the reports built on the clusters (app.server.insights_reports).

`refresh` embeds the user messages not yet in `questions`, in batches, and assigns them with
app.server.question_clusters. Reports (and the refresh route) run it in a background thread and
wait for it a bounded time, so they answer quickly even when a backlog or a new language's
reference statistics take long; they then show what is clustered so far.

Replicas may run it at once: the whole refresh holds one lock (PostgreSQL: a transaction-level
advisory lock, released by the commit even if the process dies; SQLite: a file lock next to the
database; in-memory SQLite: a process lock), so the second replica waits and then finds nothing
new. `questions.message_id` is unique as the last guard.
The clusters are kept in memory between refreshes and reloaded when the table changed under
another replica (its row count and total size differ from what this process last wrote).

Vectors are the E5 query form (the one retrieval uses), minus the mean of their language's
reference sentences (app/query_correction.py, "mean"): bench/calibrate_clusters.py measured that
this removes E5's own-language pull, so one question asked in two languages scores above two
different questions in one language. Questions are stored as float16 (the script measured the
cosine change), centroids as float32 running means.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from app.server.database import exclusive_transaction
from app.server.db import QuestionClusterRow, QuestionRow
from app.server.insights_quality import Bucket, QualityRow, quality
from app.server.insights_reports import (
    ClusterReport,
    Filters,
    SourceUsage,
    clusters_report,
    source_usage,
)
from app.server.insights_tables import Tables, from_bytes, to_bytes
from app.server.question_clusters import ClusterIndex, normalise, threshold_for

if TYPE_CHECKING:
    from app.query_correction import QueryCorrection, QueryEncoder
    from app.settings import Settings

REPORT_WAIT_S = 2.0  # how long a report waits for new questions to be clustered
FALLBACK_LANGUAGE = "en"  # whose reference mean corrects questions in a language without one
BATCH = 256  # questions embedded per forward pass and committed together
MAX_CHARS = 2000  # a question longer than this is clustered by its beginning
LOCK_TIMEOUT_S = 300
_PROCESS_LOCK = threading.Lock()
log = logging.getLogger(__name__)


class InsightsService:
    """Questions clustered across languages and the operator's reports on them; every method
    takes plain arguments (the admin routes and the console are thin wrappers)."""

    def __init__(
        self,
        engine: Engine,
        encoder: QueryEncoder,
        correction: QueryCorrection | None,
        *,
        threshold: float | None = None,
        documents: Callable[[str], list[str]] | None = None,
        collections: Callable[[], list[str]] | None = None,
        report_wait_s: float = REPORT_WAIT_S,
    ) -> None:
        self.engine = engine
        self.encoder = encoder
        self.correction = correction
        self.threshold = threshold
        self.documents = documents  # collection -> its document names (Chroma)
        self.collections = collections  # every knowledge base's name
        self._index: ClusterIndex | None = None
        self._languages: dict[int, Counter[str]] = {}
        self._representative: dict[int, int | None] = {}
        self._stamp: tuple[int, int] | None = None
        self.report_wait_s = report_wait_s
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

    @cached_property
    def tables(self) -> Tables:
        return Tables(self.engine)

    def cluster_threshold(self) -> float:
        return self.threshold or threshold_for(self.encoder.spec.model_id)

    # ------------------------------------------------------------------ reports
    def top_questions(
        self, filters: Filters, *, limit: int = 20, examples: int = 3, language: str | None = None
    ) -> list[ClusterReport]:
        """The largest clusters among the filtered questions, each with its languages, a
        representative in `language` (the operator's) where it has one, and its answer rate."""
        self.catch_up(self.report_wait_s)
        with Session(self.engine) as db:
            return clusters_report(
                db,
                self.tables,
                filters,
                self.centroids,
                gaps=False,
                limit=limit,
                examples=examples,
                operator_language=language,
            )

    def content_gaps(
        self, filters: Filters, *, limit: int = 20, examples: int = 3, language: str | None = None
    ) -> list[ClusterReport]:
        """Clusters whose questions found nothing relevant, got a thumbs-down or went to a
        person; most such questions first, flagged examples first."""
        self.catch_up(self.report_wait_s)
        with Session(self.engine) as db:
            return clusters_report(
                db,
                self.tables,
                filters,
                self.centroids,
                gaps=True,
                limit=limit,
                examples=examples,
                operator_language=language,
            )

    def source_usage(self, filters: Filters, *, limit: int = 50) -> SourceUsage:
        """Documents cited most, and documents never cited, by the filtered questions' answers."""
        self.catch_up(self.report_wait_s)
        with Session(self.engine) as db:
            return source_usage(
                db, self.tables, filters, self.documents, self.collections, limit=limit
            )

    def quality(self, filters: Filters, bucket: Bucket = "day") -> list[QualityRow]:
        """Conversations, messages, answered, feedback and handovers per period, language and
        assistant (needs no refresh: read from the conversations)."""
        with Session(self.engine) as db:
            return quality(db, self.tables, filters, bucket)

    # ------------------------------------------------------------------ refresh
    def catch_up(self, wait_s: float) -> int:
        """Cluster new questions in a background thread (one at a time per process) and wait
        for it up to `wait_s` seconds; returns how many questions are still waiting. A report
        thus never waits long: a first question in a language may need that language's
        reference statistics (400 sentences to embed), and a backlog many batches."""
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._refresh_logged, name="kbchat-insights", daemon=True
                )
                self._worker.start()
            worker = self._worker
        worker.join(wait_s)
        return self.pending()

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception:  # the reports go on with the clusters as stored; the log says why
            log.exception("clustering new questions failed")

    def pending(self) -> int:
        """User messages not clustered yet."""
        with Session(self.engine) as db:
            m = self.tables.messages
            asked = db.scalar(select(func.count()).select_from(m).where(m.c.role == "user"))
            known = db.scalar(select(func.count()).select_from(QuestionRow))
            return max(int(asked or 0) - int(known or 0), 0)

    def refresh(self, limit: int | None = None) -> int:
        """Embed and cluster every user message not clustered yet (at most `limit`); returns
        how many were added. Safe to run from several replicas at once."""
        added = 0
        with _PROCESS_LOCK:
            try:
                with _refresh_lock(self.engine) as conn, Session(bind=conn) as db:
                    self._load(db)
                    self._resolve_answers(db)
                    while (limit is None or added < limit) and self._maybe_pending(db):
                        size = BATCH if limit is None else min(BATCH, limit - added)
                        rows = self._pending(db, size)
                        if not rows:
                            break
                        self._add(db, rows)
                        added += len(rows)
                    db.flush()
                    self._stamp = self._current_stamp(db)
            except BaseException:
                self._index = None  # it may hold what was rolled back: load it again next time
                raise
        return added

    def _maybe_pending(self, db: Session) -> bool:
        """False when every user message has its question row (two counts, no join): a report
        on an up-to-date database then pays no search for new questions."""
        m = self.tables.messages
        asked = db.scalar(select(func.count()).select_from(m).where(m.c.role == "user"))
        known = db.scalar(select(func.count()).select_from(QuestionRow))
        return bool(asked != known)

    def _pending(self, db: Session, size: int) -> list[Any]:
        t = self.tables
        m, s, q = t.messages, t.sessions, t.questions
        assistant = t.column(s, "assistant")
        columns = [m.c.id, m.c.session_id, m.c.content, m.c.language, m.c.created, s.c.collection]
        query = (
            select(*columns, assistant if assistant is not None else text("NULL"))
            .join(s, s.c.id == m.c.session_id)
            .outerjoin(q, q.c.message_id == m.c.id)
            .where(m.c.role == "user", q.c.id.is_(None))
            .order_by(m.c.id)
            .limit(size)
        )
        return list(db.execute(query))

    def _add(self, db: Session, rows: Sequence[Any]) -> None:
        vectors = self.vectors([r.content for r in rows], [r.language or "" for r in rows])
        index = self._index
        assert index is not None
        placed = index.assign(vectors)
        answers = self._answers(db, [(r.id, r.session_id) for r in rows])
        new_members: dict[int, list[tuple[int, np.ndarray]]] = {}
        for row, vector, where in zip(rows, vectors, placed, strict=True):
            db.add(
                QuestionRow(
                    message_id=row.id,
                    session_id=row.session_id,
                    assistant=row[-1],
                    collection=row.collection,
                    language=(row.language or "")[:16],
                    cluster_id=where.cluster,
                    vector=to_bytes(vector),
                    answer_id=answers.get(row.id),
                    created=row.created,
                )
            )
            self._languages.setdefault(where.cluster, Counter())[row.language or ""] += 1
            new_members.setdefault(where.cluster, []).append((row.id, vector))
        self._save_clusters(db, new_members)
        index.clear_touched()
        db.flush()

    def vectors(self, texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
        """The clustering vectors of questions: query form, language mean removed, unit length."""
        profile = self.encoder.profile
        raw = self.encoder.encode([profile.query(t[:MAX_CHARS]) for t in texts])
        if self.correction is None:
            return normalise(raw)
        out = np.empty_like(raw, dtype=np.float32)
        for i, (vector, language) in enumerate(zip(raw, languages, strict=True)):
            # A language without reference sentences ("und", a rare one) still loses the part
            # every E5 vector shares, through English's mean: uncorrected, any two such
            # questions score like paraphrases (raw cosines of unrelated questions reach 0.8).
            reference = (language and self.correction.reference(language)) or (
                self.correction.reference(FALLBACK_LANGUAGE)
            )
            out[i] = vector if reference is None else reference.correct(vector, "mean")
        return normalise(out)

    def _save_clusters(self, db: Session, members: dict[int, list[tuple[int, np.ndarray]]]) -> None:
        """Write the clusters this batch changed; the representative stays the member nearest
        the centroid among the old one and the newcomers."""
        index = self._index
        assert index is not None
        old_reps = {c: self._representative.get(c) for c in members}
        rep_vectors = {
            mid: from_bytes(vec)
            for mid, vec in db.execute(
                select(QuestionRow.message_id, QuestionRow.vector).where(
                    QuestionRow.message_id.in_([r for r in old_reps.values() if r is not None])
                )
            )
        }
        now = datetime.now(UTC)
        with db.no_autoflush:  # one SELECT for all, not one flush and SELECT per cluster
            stored = {
                row.id: row
                for row in db.scalars(
                    select(QuestionClusterRow).where(QuestionClusterRow.id.in_(list(members)))
                )
            }
        for cluster, newcomers in members.items():
            centroid = index.centroid(cluster)
            candidates = list(newcomers)
            old = old_reps[cluster]
            if old is not None and old in rep_vectors:
                candidates.append((old, rep_vectors[old]))
            best = max(candidates, key=lambda c: float(c[1] @ centroid))[0]
            self._representative[cluster] = best
            values = {
                "centroid": to_bytes(index.mean(cluster), np.float32),
                "size": index.size(cluster),
                "representative": best,
                "languages": json.dumps(dict(self._languages[cluster]), sort_keys=True),
                "updated": now,
            }
            row = stored.get(cluster)
            if row is None:
                db.add(QuestionClusterRow(id=cluster, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)

    def _answers(self, db: Session, questions: Iterable[tuple[int, str]]) -> dict[int, int]:
        """Each question's reply: the next message of its session, when it is not a question."""
        asked = dict(questions)
        if not asked:
            return {}
        m = self.tables.messages
        rows = db.execute(
            select(m.c.id, m.c.session_id, m.c.role)
            .where(m.c.session_id.in_(set(asked.values())), m.c.id >= min(asked))
            .order_by(m.c.id)
        )
        found: dict[int, int] = {}
        waiting: dict[str, int] = {}  # session -> its latest question without a reply yet
        for mid, session, role in rows:
            if mid in asked:
                waiting[session] = mid
            elif role != "user" and session in waiting:
                found[waiting.pop(session)] = mid
            elif role == "user":
                waiting.pop(session, None)
        return found

    def _resolve_answers(self, db: Session, most: int = 5000) -> None:
        """Questions stored before their reply existed (a person answered later) get it now."""
        rows = db.execute(
            select(QuestionRow.message_id, QuestionRow.session_id)
            .where(QuestionRow.answer_id.is_(None))
            .order_by(QuestionRow.id.desc())
            .limit(most)
        ).all()
        for question, answer in self._answers(db, [(r[0], r[1]) for r in rows]).items():
            db.execute(
                update(QuestionRow)
                .where(QuestionRow.message_id == question)
                .values(answer_id=answer)
            )

    # ------------------------------------------------------------- cluster state
    def _current_stamp(self, db: Session) -> tuple[int, int]:
        count, total = db.execute(
            select(
                func.count(QuestionClusterRow.id),
                func.coalesce(func.sum(QuestionClusterRow.size), 0),
            )
        ).one()
        return int(count), int(total)

    def _load(self, db: Session) -> None:
        """The clusters from the database, unless this process already holds them as stored."""
        stamp = self._current_stamp(db)
        if self._index is not None and stamp == self._stamp:
            return
        rows = db.execute(
            select(
                QuestionClusterRow.id,
                QuestionClusterRow.centroid,
                QuestionClusterRow.size,
                QuestionClusterRow.representative,
                QuestionClusterRow.languages,
            ).order_by(QuestionClusterRow.id)
        ).all()
        threshold = self.cluster_threshold()
        if rows:
            ids = np.array([r[0] for r in rows], np.int64)
            means = np.stack([from_bytes(r[1], np.float32) for r in rows])
            sizes = np.array([r[2] for r in rows], np.int64)
            self._index = ClusterIndex.from_arrays(ids, means, sizes, threshold)
        else:
            self._index = ClusterIndex(self.encoder.spec.dimension, threshold)
        self._representative = {r[0]: r[3] for r in rows}
        self._languages = {r[0]: Counter(json.loads(r[4])) for r in rows}
        self._stamp = stamp

    def centroids(self, clusters: Iterable[int]) -> dict[int, np.ndarray]:
        """Unit centroids of `clusters`, as stored."""
        wanted = list(clusters)
        with Session(self.engine) as db:
            rows = db.execute(
                select(QuestionClusterRow.id, QuestionClusterRow.centroid).where(
                    QuestionClusterRow.id.in_(wanted)
                )
            )
            return {r[0]: normalise(from_bytes(r[1], np.float32)) for r in rows}


def build_insights(
    settings: Settings, engine: Engine, encoder: Any, client: Any
) -> InsightsService:
    """The service as the server and `kbchat insights` use it: the configured embedder, the
    language statistics the chain shares (data dir), and the store's documents."""
    from app.query_correction import QueryCorrection
    from app.store import collection_names

    correction = QueryCorrection(encoder, settings.data_dir / "language_reference", mode="mean")
    return InsightsService(
        engine,
        encoder,
        correction,
        documents=chroma_documents(client),
        collections=lambda: collection_names(client),
    )


def chroma_documents(client: Any) -> Callable[[str], list[str]]:
    """collection -> the distinct `source` of its chunks (its documents), read from Chroma."""
    from app.store import collection_names

    def documents(name: str) -> list[str]:
        if name not in collection_names(client):
            return []
        collection = client.get_collection(name, embedding_function=None)
        seen: set[str] = set()
        offset, page = 0, 1000
        while True:
            metadatas = collection.get(include=["metadatas"], limit=page, offset=offset)
            rows = metadatas.get("metadatas") or []
            seen.update(str(m["source"]) for m in rows if m and m.get("source"))
            if len(rows) < page:
                return sorted(seen)
            offset += page

    return documents


def delete_for_sessions(db: Session | Connection, session_ids: Sequence[str]) -> int:
    """Forget the questions of these conversations (erasure, retention); call it in the same
    transaction that deletes their messages, before them (questions reference messages).
    Cluster centroids keep the erased questions' share of the mean, which names nobody; sizes
    and languages are lowered so the counts stay true."""
    if not session_ids:
        return 0
    where = QuestionRow.session_id.in_(list(session_ids))
    gone = list(db.execute(select(QuestionRow.cluster_id, QuestionRow.language).where(where)))
    db.execute(delete(QuestionRow).where(where))
    for (cluster, language), count in Counter((r[0], r[1]) for r in gone).items():
        row = db.execute(
            select(QuestionClusterRow.size, QuestionClusterRow.languages).where(
                QuestionClusterRow.id == cluster
            )
        ).first()
        if row is None:
            continue
        languages = Counter(json.loads(row[1]))
        languages[language] -= count
        db.execute(
            update(QuestionClusterRow)
            .where(QuestionClusterRow.id == cluster)
            .values(
                size=max(int(row[0]) - count, 0),
                languages=json.dumps({k: v for k, v in languages.items() if v > 0}, sort_keys=True),
            )
        )
    return len(gone)


def _refresh_lock(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """One clustering process of all replicas at a time (see `exclusive_transaction`)."""
    return exclusive_transaction(engine, "insights", b"kbinsig", LOCK_TIMEOUT_S)
