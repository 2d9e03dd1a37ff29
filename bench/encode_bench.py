"""Query encoding latency and passage throughput of each encoder backend, in one process.

For fp32 torch and the int8 copies (ONNX, CTranslate2) of the configured model: p50/p95 of
encoding one question alone (XQuAD dev questions in 12 languages, after a warm-up), and texts
per second for passages (XQuAD paragraphs) in the encoder's own batches; CPU time beside wall
time, the steadier measure on a shared machine. Threads as configured
(KBCHAT_EMBEDDING_THREADS; unset: cores - 1). Usage:
  .venv/bin/python bench/encode_bench.py [--queries N] [--passages N]
      [--backends torch,onnx-int8,ct2-int8]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--passages", type=int, default=96)
    parser.add_argument("--backends", default="torch,onnx-int8,ct2-int8")
    args = parser.parse_args()

    from app.embeddings.e5 import build_embeddings
    from app.settings import load_settings

    rows = [json.loads(line) for line in (XQUAD / "queries.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    questions = [r["question"] for r in rng.sample(rows, args.queries)]
    files = sorted((XQUAD / "corpus").glob("*/*.txt"))
    passages = [p.read_text(encoding="utf-8") for p in rng.sample(files, args.passages)]
    settings = load_settings()
    for backend in args.backends.split(","):
        emb = settings.embedding.model_copy(update={"backend": backend})
        encoder = build_embeddings(settings.model_copy(update={"embedding": emb}))
        started = time.perf_counter()
        _ = encoder.model
        load = time.perf_counter() - started
        for q in questions[:20]:
            encoder.embed_query(q)
        times, cpu = [], []
        for q in questions:
            t0, c0 = time.perf_counter(), time.process_time()
            encoder.embed_query(q)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        t0, c0 = time.perf_counter(), time.process_time()
        encoder.encode_passages(passages)
        rate = len(passages) / (time.perf_counter() - t0)
        per_passage = (time.process_time() - c0) / len(passages) * 1000
        print(
            f"{backend:10s} ({type(encoder).__name__}): load {load:.2f} s; one query p50 "
            f"{statistics.median(times):.2f} ms, p95 {np.percentile(times, 95):.2f} ms "
            f"(CPU p50 {statistics.median(cpu):.2f} ms); passages {rate:.1f}/s "
            f"(CPU {per_passage:.1f} ms each)",
            flush=True,
        )


if __name__ == "__main__":
    main()
