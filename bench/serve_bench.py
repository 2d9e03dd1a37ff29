"""Load on `kbchat serve` with an LLM that answers instantly (the loopback stub).

Starts the real server as a subprocess on loopback over the example knowledge base, then measures
for POST /api/chat (streaming) with 1, 8 and 32 concurrent clients: requests per second and
p50/p95 time to first token, next to the chain's own retrieval time (reported by the server),
the CPU time per request of the server and of this process (the clients and the LLM stub share
the machine's cores with the server), and the mean number of questions per encode call of the
server's query batcher (from /metrics); then the server's RSS after 100 requests and after
--soak requests (default 10,000). `--embedder instant` answers query encodings from a table
(bench/instant_serve.py): what the rest of the request path allows when the encoder is free.
`--reply-words` and `--piece-delay` make the stub answer at a model's pace. `--data-dir` keeps
the ingested knowledge base between runs. All traffic stays on 127.0.0.1;
request loops are bounded. Usage:
  .venv/bin/python bench/serve_bench.py [--requests 160] [--soak 10000] [--embedder instant]
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from server_process import (
    REPO,
    bench_env,
    cpu_seconds,
    ingest_examples,
    kbchat_serve,
    status_kb,
)

QUESTIONS = [
    "¿Cuántos años de garantía tiene la batería?",
    "Wie lange dauert das Laden des Akkus?",
    "When was Nordlicht Robotics founded?",
    "Quelle est la pente maximale ?",
    "アプリはどのOSに対応していますか？",
    "How loud is the Mowbot M3?",
]


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


REQUEST_NUMBERS = itertools.count()


def one_chat(client: httpx.Client, base: str, i: int) -> tuple[float, float, float]:
    """(time to first token, total, server retrieval ms) for one streamed answer. Every
    question is new to the server (numbered), so its query-vector cache never answers for the
    encoder."""
    started = time.perf_counter()
    first = None
    retrieval = 0.0
    question = f"{QUESTIONS[i % len(QUESTIONS)]} ({next(REQUEST_NUMBERS)})"
    body = {"message": question, "stream": True}
    with client.stream("POST", f"{base}/api/chat", json=body, timeout=120) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token" and first is None:
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "done":
                retrieval = float(json.loads(line[6:]).get("retrieval_ms", 0.0))
    total = time.perf_counter() - started
    return (first if first is not None else total), total, retrieval


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


ADMIN_KEY = "serve-bench-admin-key"


def batches(base: str) -> tuple[float, float]:
    """(encode calls, questions encoded) of the server's query batcher so far (/metrics)."""
    text = httpx.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    ).text
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("kbchat_query_batch")
    )
    return (
        float(values.get("kbchat_query_batch_size_count", 0)),
        float(values.get("kbchat_query_batch_size_sum", 0)),
    )


def run_level(base: str, clients: int, requests: int, server_pid: int) -> dict[str, float]:
    if requests <= 0:
        return {}
    with httpx.Client() as client, ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        server_cpu, own_cpu = cpu_seconds(server_pid), own_cpu_seconds()
        calls, encoded = batches(base)
        results = list(pool.map(lambda i: one_chat(client, base, i), range(requests)))
        wall = time.perf_counter() - started
        server_cpu, own_cpu = cpu_seconds(server_pid) - server_cpu, own_cpu_seconds() - own_cpu
        calls_after, encoded_after = batches(base)
    ttft = sorted(r[0] for r in results)
    return {
        "clients": clients,
        "requests": requests,
        "rps": requests / wall,
        "ttft_p50_ms": 1000 * statistics.median(ttft),
        "ttft_p95_ms": 1000 * ttft[int(0.95 * (len(ttft) - 1))],
        "retrieval_p50_ms": statistics.median(r[2] for r in results),
        "server_cpu_ms": 1000 * server_cpu / requests,
        "bench_cpu_ms": 1000 * own_cpu / requests,
        "batch_mean": (encoded_after - encoded) / max(calls_after - calls, 1),
    }


def ingested(env: dict[str, str], data_dir: str) -> None:
    """The example knowledge base in `data_dir` (kept from an earlier run when already there);
    the conversations database starts empty at every run, so runs compare alike."""
    for path in glob.glob(os.path.join(data_dir, "kbchat.sqlite3*")):
        os.remove(path)
    marker = os.path.join(data_dir, ".serve-bench-ingested")
    if os.path.exists(marker):
        return
    ingest_examples(env)
    open(marker, "w").close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=160, help="requests per level")
    parser.add_argument("--soak", type=int, default=10_000, help="requests before last RSS")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument(
        "--embedder",
        choices=("model", "instant"),
        default="model",
        help="instant: query encodings from a table (bench/instant_serve.py)",
    )
    parser.add_argument("--data-dir", help="keep the ingested data here between runs")
    parser.add_argument(
        "--reply-words",
        type=int,
        default=0,
        help="the LLM stub's answer in words, one streamed piece each (0: 'Answer [1].')",
    )
    parser.add_argument(
        "--piece-delay",
        type=float,
        default=0.0,
        help="seconds the LLM stub waits before each answer piece after the first (a real "
        "model's pace: with --reply-words 40 and 0.05, two seconds an answer)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.live_server import free_port
    from tests.openai_stub import OpenAIStub

    levels = [int(n) for n in args.levels.split(",")]
    command = None
    if args.embedder == "instant":
        command = [sys.executable, str(REPO / "bench" / "instant_serve.py")]
    reply = "Answer [1]." if args.reply_words <= 0 else " ".join(["word"] * args.reply_words)
    with tempfile.TemporaryDirectory() as tmp, OpenAIStub(reply=reply) as stub:
        stub.piece_delay = args.piece_delay
        data_dir = args.data_dir or tmp
        os.makedirs(data_dir, exist_ok=True)
        env = bench_env(
            data_dir,
            OPENAI_BASE_URL=stub.base_url,
            KBCHAT_LLM_MODEL="stub",
            KBCHAT_SERVER_RATE_LIMIT="1000000/minute",
            KBCHAT_ADMIN_API_KEY=ADMIN_KEY,  # for /metrics: the batcher's batch sizes
        )
        ingested(env, data_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with kbchat_serve(env, port, command, settled=True) as server:
            run_level(base, 4, 20, server.pid)  # warm up
            print(
                f"{'clients':>7} {'req/s':>7} {'TTFT p50':>9} {'TTFT p95':>9} "
                f"{'retrieval p50':>14} {'server CPU/req':>15} {'bench CPU/req':>14} {'batch':>6}"
            )
            done = 20
            for clients in levels:
                r = run_level(base, clients, args.requests, server.pid)
                done += args.requests
                print(
                    f"{clients:>7} {r['rps']:>7.1f} {r['ttft_p50_ms']:>7.0f}ms "
                    f"{r['ttft_p95_ms']:>7.0f}ms {r['retrieval_p50_ms']:>12.1f}ms "
                    f"{r['server_cpu_ms']:>13.1f}ms {r['bench_cpu_ms']:>12.1f}ms "
                    f"{r['batch_mean']:>6.1f}",
                    flush=True,
                )
            rss_start = rss_mb(server.pid)
            print(f"RSS after {done} requests: {rss_start:.0f} MB")
            run_level(base, 8, 100, server.pid)
            done += 100
            rss_100 = rss_mb(server.pid)
            print(f"RSS after {done} requests: {rss_100:.0f} MB", flush=True)
            started = time.perf_counter()
            run_level(base, 8, args.soak - done, server.pid)
            done = max(done, args.soak)
            print(
                f"RSS after {done} requests: {rss_mb(server.pid):.0f} MB "
                f"(growth {rss_mb(server.pid) - rss_100:+.0f} MB; soak took "
                f"{time.perf_counter() - started:.0f} s)"
            )


if __name__ == "__main__":
    main()
