"""How cost grows with the knowledge base: ingest and query latency at 1k, 10k and 100k chunks.

Documents are made of Tatoeba sentences (../shared/data/tatoeba-v1, CC BY 2.0 FR; by default
XQuAD's twelve languages, `--langs ''` for all 112): six random sentences of one language per
file, one chunk each, so every text is distinct. Each level is ingested by the real pipeline
(`ingest_folder`: parsing, language detection, chunking by the model's tokenizer, sentence
vectors, Chroma writes) into a fresh embedded store. Embedding 100k chunks and their sentences
for real would take hours on two cores, so the configured encoder embeds the first --real texts
and, after that, a stand-in returns a real vector of an earlier text with a little noise (cost
~0). Printed per level: the pipeline's own time (everything but encoding, measured; the
per-language statistics computed once per data dir apart), the encoder's measured rate on the
real part, the total ingest time that rate implies, store size on disk, and the latency of
`search` (the product's ranking, real query encoder) for 60 XQuAD questions in 12 languages:
p50 and p95. Usage:
  .venv/bin/python bench/scale_bench.py [--levels 1000,10000,100000] [--real 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TATOEBA = REPO.parent / "shared" / "data" / "tatoeba-v1"
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"


class PartlyReal:
    """The real encoder for the first `real` texts, then a cheap stand-in (see the module)."""

    def __init__(self, inner: Any, real: int) -> None:
        self.inner, self.left = inner, real
        self.real_texts, self.real_seconds = 0, 0.0
        self.pool: list[np.ndarray] = []
        self.rng = np.random.default_rng(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        take = min(self.left, len(texts))
        out = []
        if take:
            started = time.perf_counter()
            out.append(self.inner.encode_passages(texts[:take]))
            self.real_seconds += time.perf_counter() - started
            self.real_texts += take
            self.left -= take
            self.pool.extend(out[-1])
        if len(texts) > take:
            base = np.stack(
                [self.pool[i] for i in self.rng.integers(0, len(self.pool), len(texts) - take)]
            )
            noisy = base + self.rng.normal(0, 0.02, base.shape).astype(np.float32)
            out.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)


def sentences_by_language(wanted: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(TATOEBA.glob("tatoeba.*-eng.*")):
        lang = path.suffix[1:]
        if wanted and lang not in wanted:
            continue
        if lang == "eng" and "eng" in out:
            continue
        lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        out.setdefault(lang, []).extend(lines)
    return out


def write_documents(folder: Path, count: int, pool: dict[str, list[str]], seed: int) -> None:
    rng = random.Random(seed)
    langs = sorted(pool)
    folder.mkdir(parents=True)
    for i in range(count):
        lang = langs[i % len(langs)]
        text = " ".join(rng.sample(pool[lang], 6))
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{lang}-{i:06d}.txt").write_text(text + "\n", encoding="utf-8")


def questions(count: int) -> list[str]:
    rows = [json.loads(line) for line in (XQUAD / "queries.jsonl").read_text().splitlines()]
    rng = random.Random(1)
    return [r["question"] for r in rng.sample(rows, count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1000,10000,100000")
    parser.add_argument("--real", type=int, default=2000, help="texts embedded for real")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--langs",
        default="ara,cmn,deu,ell,eng,hin,ron,rus,spa,tha,tur,vie",
        help="Tatoeba languages of the documents (XQuAD's twelve); empty: all 112",
    )
    args = parser.parse_args()

    from app.embeddings.e5 import build_embeddings
    from app.ingest import ingest_folder
    from app.search import search
    from app.settings import load_settings
    from app.store import make_client

    pool = sentences_by_language({x for x in args.langs.split(",") if x})
    asked = questions(60)
    results = []
    for level in [int(x) for x in args.levels.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            docs = Path(tmp) / "docs"
            write_documents(docs, level, pool, seed=level)
            settings = load_settings(data_dir=Path(tmp) / "data")
            encoder = build_embeddings(load_settings(data_dir=REPO / "data"))
            _ = encoder.model
            partly = PartlyReal(encoder, args.real)
            client = make_client(settings)
            import app.ingest

            once = {"s": 0.0}
            real_prepare = app.ingest.prepare

            def timed_prepare(
                *a: Any, once: dict[str, float] = once, real: Any = real_prepare, **kw: Any
            ) -> Any:
                t0 = time.perf_counter()
                try:
                    return real(*a, **kw)
                finally:
                    once["s"] += time.perf_counter() - t0

            app.ingest.prepare = timed_prepare  # type: ignore[assignment]
            started = time.perf_counter()
            report = ingest_folder(settings, docs, "scale", embedder=partly, client=client)
            wall = time.perf_counter() - started
            app.ingest.prepare = real_prepare  # type: ignore[assignment]
            texts = report.embedded + report.sentences_embedded
            rate = partly.real_texts / partly.real_seconds
            pipeline = wall - partly.real_seconds - once["s"]  # statistics: once per data dir
            implied = pipeline + texts / rate
            for q in asked:  # a question language's statistics are computed once, then cached
                search(settings, q, collection_name="scale", k=5, embedder=encoder, client=client)
            latencies = []
            for q in asked:
                t0 = time.perf_counter()
                search(settings, q, collection_name="scale", k=5, embedder=encoder, client=client)
                latencies.append((time.perf_counter() - t0) * 1000)
            size = sum(p.stat().st_size for p in (Path(tmp) / "data").rglob("*") if p.is_file())
            row = {
                "chunks": report.chunks_written,
                "texts_embedded": texts,
                "pipeline_without_encoding_s": round(pipeline, 1),
                "encoder_texts_per_s": round(rate, 1),
                "ingest_implied_s": round(implied, 1),
                "chunks_per_s_implied": round(report.chunks_written / implied, 1),
                "store_mb": round(size / 2**20, 1),
                "language_statistics_once_s": round(once["s"], 1),
                "search_p50_ms": round(statistics.median(latencies), 1),
                "search_p95_ms": round(float(np.percentile(latencies, 95)), 1),
            }
            results.append(row)
            print(
                f"{row['chunks']:>7} chunks ({texts} texts with sentences): pipeline without "
                f"encoding {pipeline:7.1f} s, encoder {rate:6.1f} texts/s -> ingest "
                f"{implied:7.1f} s ({row['chunks_per_s_implied']} chunks/s); store "
                f"{row['store_mb']} MB; search p50 {row['search_p50_ms']} ms, "
                f"p95 {row['search_p95_ms']} ms",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
