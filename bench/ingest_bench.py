"""Ingest throughput against raw SentenceTransformer.encode, and the cost of a no-change re-sync.

Each measurement is a whole process (start-up, imports and model load included), as a user pays
it. Usage: .venv/bin/python bench/ingest_bench.py [FOLDER] [--repeat N]
Default folder: ../shared/data/xquad-dev/corpus/en.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "xquad-dev" / "corpus" / "en"

RAW_ENCODE = """
import json, sys, time
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1], encoding="utf-8"))
model = SentenceTransformer(sys.argv[2], device="cpu", local_files_only=True)
model.encode(["passage: " + t for t in texts], batch_size=int(sys.argv[3]),
             normalize_embeddings=True)
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--backends",
        default="",
        help="also time `kbchat ingest` with these KBCHAT_EMBEDDING_BACKEND values, interleaved "
        "with the rest (e.g. torch,onnx-int8: before/after in the same conditions)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from app.embeddings.resolve import resolve_model
    from app.settings import load_settings

    settings = load_settings()
    model = resolve_model(settings.embedding.model, settings.models_dir)  # prepared up front
    batch = str(settings.embedding.batch_size or 8)  # kbchat's own CPU default
    kbchat = [sys.executable, "-m", "app.cli"]
    pipeline, raw, raw_default, resync = [], [], [], []
    by_backend: dict[str, list[float]] = {b: [] for b in args.backends.split(",") if b}
    report: dict[str, object] = {}
    again: dict[str, object] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "KBCHAT_DATA_DIR": tmp,
                "KBCHAT_EMBEDDING_MODEL": str(model.path),
                "HF_HUB_OFFLINE": "1",
            }
            for backend, runs in by_backend.items():
                with tempfile.TemporaryDirectory() as other:
                    alt = {**env, "KBCHAT_DATA_DIR": other, "KBCHAT_EMBEDDING_BACKEND": backend}
                    runs.append(timed([*kbchat, "ingest", str(args.folder), "--json"], alt)[0])
            seconds, out = timed([*kbchat, "ingest", str(args.folder), "--json"], env)
            pipeline.append(seconds)
            report = json.loads(out)
            seconds, out = timed([*kbchat, "ingest", str(args.folder), "--json"], env)
            resync.append(seconds)
            again = json.loads(out)
            texts_file = Path(tmp) / "chunks.json"
            dump = (
                "import chromadb, json, sys; c = chromadb.PersistentClient(sys.argv[1])"
                ".get_collection('default'); json.dump(c.get(include=['documents'])"
                "['documents'], open(sys.argv[2], 'w'))"
            )
            subprocess.run(
                [sys.executable, "-c", dump, f"{tmp}/chroma", str(texts_file)], check=True
            )
            seconds, _ = timed(
                [sys.executable, "-c", RAW_ENCODE, str(texts_file), str(model.path), batch], env
            )
            raw.append(seconds)
            seconds, _ = timed(  # SentenceTransformer.encode as it comes (batch_size=32)
                [sys.executable, "-c", RAW_ENCODE, str(texts_file), str(model.path), "32"], env
            )
            raw_default.append(seconds)
    chunks = int(report["chunks_written"])  # type: ignore[call-overload]
    p, r, s = statistics.median(pipeline), statistics.median(raw), statistics.median(resync)
    print(f"folder: {args.folder}  files: {len(report['added'])}  chunks: {chunks}")  # type: ignore[arg-type]
    print(f"model: {model.model_id} ({model.source}, {model.path})  repeats: {args.repeat}")
    print(f"pipeline (kbchat ingest, whole process): {p:6.2f} s  {chunks / p:7.1f} chunks/s")
    for backend, runs in by_backend.items():
        b = statistics.median(runs)
        print(
            f"pipeline with {backend:>10} (whole process): {b:6.2f} s  {chunks / b:7.1f} chunks/s"
        )
    d = statistics.median(raw_default)
    print(f"raw encode, same batch {batch:>3} (process): {r:6.2f} s  {chunks / r:7.1f} chunks/s")
    print(f"raw encode, default batch 32 (process): {d:6.2f} s  {chunks / d:7.1f} chunks/s")
    print(
        f"pipeline / raw throughput: {r / p:.3f} at the same batch size (target >= 0.9); "
        f"{d / p:.3f} against encode's default batch size"
    )
    print(
        f"re-sync, nothing changed (whole process): {s:6.2f} s = {s / p:.1%} of first ingest "
        f"(target < 15%); embedded {again['embedded']}, model loaded: {again['model_loaded']}"
    )
    print(
        "runs (s): pipeline",
        [round(x, 2) for x in pipeline],
        "raw",
        [round(x, 2) for x in raw],
        "raw batch 32",
        [round(x, 2) for x in raw_default],
        "re-sync",
        [round(x, 2) for x in resync],
    )


if __name__ == "__main__":
    main()
