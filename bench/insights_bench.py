"""Benchmark the insights at 100,000 stored questions: incremental assignment of 1,000 new ones
(the refresh a report runs first), the reports, and memory.

Vectors: the XQuAD dev questions of bench/calibrate_clusters.py (real multilingual-e5-small
vectors, language-corrected as the service does; embedded once and cached under
/tmp/kbchat-cache-clusters), each copied many times with a random jitter that keeps a cosine of
about 0.95 to its original: paraphrases of real questions, no 100k texts to embed. The refresh
measured is the service's own (SQL reads and writes included) with an encoder that returns
these vectors, so the embedding time is not in it (it is the model's: see the calibration
script's texts per second). SQLite in a temporary folder.
Usage: nice -n 10 .venv/bin/python bench/insights_bench.py [--questions 100000] [--new 1000]

Measured on the shared 2-core development machine (load 5-8), default and --cosine 0.75:
  store 100000 questions (bulk, clustered)       11.3 s        25.3 s
  refresh: load clusters + assign 1000 new        1.46 s        1.69 s   (385 / 2,226 clusters)
  engine only: assign 1000 more (in memory)       0.118 s       0.081 s
  top questions (20 clusters, 3 examples)         0.66 s        0.75 s
  top questions, operator language 'de'           0.76 s        0.71 s
  content gaps (20 clusters)                      0.93 s        0.84 s
  source usage                                    1.31 s        1.32 s
  quality per day (30 days)                       0.82 s        0.70 s
  centroid matrix                                 1.1 MiB       6.5 MiB
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Replay:
    """An encoder that returns the next prepared vectors (the texts are ignored)."""

    def __init__(self, vectors: np.ndarray, spec: object, profile: object) -> None:
        self.vectors, self.spec, self.profile, self.at = vectors, spec, profile, 0

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self.vectors[self.at : self.at + len(texts)]
        self.at += len(texts)
        return out


def jittered(base: np.ndarray, n: int, rng: np.random.Generator, cosine: float) -> np.ndarray:
    picks = base[rng.integers(0, len(base), n)]
    noise = rng.normal(size=picks.shape).astype(np.float32)
    noise -= (noise * picks).sum(axis=1, keepdims=True) * picks  # orthogonal to the original
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = cosine * picks + np.sqrt(1 - cosine**2) * noise
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def fill(engine: object, vectors: np.ndarray, languages: list[str], threshold: float) -> None:
    """Store len(vectors) answered questions (one per session) and their clusters, in bulk."""
    from sqlalchemy import insert

    from app.server.db import ChatSession, Message, QuestionClusterRow, QuestionRow
    from app.server.insights_tables import to_bytes
    from app.server.question_clusters import ClusterIndex

    index = ClusterIndex(vectors.shape[1], threshold)
    clusters = [
        a.cluster
        for lo in range(0, len(vectors), 5000)
        for a in index.assign(vectors[lo : lo + 5000])
    ]
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=29)
    n = len(vectors)
    sources = '[{"number": 1, "source": "doc%d.md"}]'
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            insert(ChatSession),
            [{"id": f"s{i}", "collection": "default", "created": start} for i in range(n)],
        )
        rows = []
        for i in range(n):
            at = start + timedelta(seconds=i * 25)
            rows.append(
                {
                    "id": 2 * i + 1,
                    "session_id": f"s{i}",
                    "role": "user",
                    "content": f"question {i}",
                    "sources": "[]",
                    "language": languages[i],
                    "mode": "",
                    "created": at,
                }
            )
            rows.append(
                {
                    "id": 2 * i + 2,
                    "session_id": f"s{i}",
                    "role": "assistant",
                    "content": "see [1]" if i % 3 else "nothing found",
                    "sources": sources % (i % 500) if i % 3 else "[]",
                    "language": languages[i],
                    "mode": "generative",
                    "created": at,
                }
            )
        conn.execute(insert(Message), rows)
        conn.execute(
            insert(QuestionRow),
            [
                {
                    "message_id": 2 * i + 1,
                    "session_id": f"s{i}",
                    "assistant": None,
                    "collection": "default",
                    "language": languages[i],
                    "cluster_id": clusters[i],
                    "vector": to_bytes(vectors[i]),
                    "answer_id": 2 * i + 2,
                    "created": start + timedelta(seconds=i * 25),
                }
                for i in range(n)
            ],
        )
        conn.execute(
            insert(QuestionClusterRow),
            [
                {
                    "id": int(c),
                    "centroid": to_bytes(index.mean(int(c)), np.float32),
                    "size": index.size(int(c)),
                    "representative": None,
                    "languages": "{}",
                    "updated": start,
                }
                for c in index.ids
            ],
        )


def timed(label: str, run: object, repeat: int = 1) -> object:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    print(f"{label:48s} {best * 1000:9.1f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--cosine", type=float, default=0.95, help="jitter: cosine to original")
    args = parser.parse_args()

    from app.embeddings.e5 import build_embeddings
    from app.query_correction import QueryCorrection
    from app.server.db import ConversationStore, Message
    from app.server.insights import InsightsService
    from app.server.insights_reports import Filters
    from app.server.question_clusters import threshold_for
    from app.settings import load_settings
    from bench.calibrate_clusters import CACHE, corrected, xquad
    from bench.embedding_cache import cached

    embedder = build_embeddings(load_settings())
    rows = xquad(4)
    langs = [r["lang"] for r in rows]
    raw = cached(embedder, [r["question"] for r in rows], "query", CACHE)
    correction = QueryCorrection(embedder, CACHE / "language_reference")
    base = corrected(raw, langs, correction, "mean").astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    threshold = threshold_for(embedder.spec.model_id)
    total = args.questions + args.new
    vectors = jittered(base, total, rng, args.cosine)
    languages = [langs[i % len(langs)] for i in range(total)]

    with tempfile.TemporaryDirectory() as tmp:
        store = ConversationStore(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        timed(
            f"store {args.questions} questions (bulk, clustered)",
            lambda: fill(store.engine, vectors[: args.questions], languages, threshold),
        )
        new = vectors[args.questions :]
        service = InsightsService(
            store.engine, Replay(new, embedder.spec, embedder.profile), None, threshold=threshold
        )
        with store.engine.begin() as conn:  # the new questions arrive as chat messages
            sessions = [f"s{i}" for i in range(args.new)]
            now = datetime.now(UTC).replace(tzinfo=None)
            conn.execute(
                Message.__table__.insert(),
                [
                    {
                        "session_id": s,
                        "role": "user",
                        "content": f"new {i}",
                        "sources": "[]",
                        "language": languages[i],
                        "mode": "",
                        "created": now,
                    }
                    for i, s in enumerate(sessions)
                ],
            )
        added = timed(f"refresh: load clusters + assign {args.new} new", service.refresh)
        print(f"  added {added}; clusters {service._index and len(service._index)}")
        print(
            f"  centroid matrix {service._index._units.nbytes / 2**20:.1f} MiB"  # type: ignore[union-attr]
            if service._index
            else ""
        )
        index = service._index
        assert index is not None
        more = jittered(base, args.new, rng, args.cosine)
        timed(f"engine only: assign {args.new} more (in memory)", lambda: index.assign(more))
        f = Filters(since=(now - timedelta(days=30)).date(), until=now.date())
        timed("top questions (20 clusters, 3 examples)", lambda: service.top_questions(f), 3)
        timed(
            "top questions, operator language 'de'",
            lambda: service.top_questions(f, language="de"),
            3,
        )
        timed("content gaps (20 clusters)", lambda: service.content_gaps(f), 3)
        timed("source usage", lambda: service.source_usage(f), 3)
        timed("quality per day (30 days)", lambda: service.quality(f), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak resident memory of the whole process: {peak:.0f} MiB (torch and the model included)"
    )


if __name__ == "__main__":
    main()
