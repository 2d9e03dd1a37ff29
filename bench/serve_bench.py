"""Load on `kbchat serve` with an LLM that answers instantly (the loopback stub).

Starts the real server as a subprocess on loopback over the example knowledge base, then measures
for POST /api/chat (streaming) with 1, 8 and 32 concurrent clients: requests per second and
p50/p95 time to first token, next to the chain's own retrieval time (reported by the server);
then the server's RSS after 100 requests and after --soak requests (default 10,000).
All traffic stays on 127.0.0.1; request loops are bounded. Usage:
  .venv/bin/python bench/serve_bench.py [--requests 160] [--soak 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from server_process import REPO, bench_env, kbchat_serve, status_kb

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


def one_chat(client: httpx.Client, base: str, i: int) -> tuple[float, float, float]:
    """(time to first token, total, server retrieval ms) for one streamed answer."""
    started = time.perf_counter()
    first = None
    retrieval = 0.0
    body = {"message": QUESTIONS[i % len(QUESTIONS)], "stream": True}
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


def run_level(base: str, clients: int, requests: int) -> dict[str, float]:
    with httpx.Client() as client, ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda i: one_chat(client, base, i), range(requests)))
        wall = time.perf_counter() - started
    ttft = sorted(r[0] for r in results)
    return {
        "clients": clients,
        "requests": requests,
        "rps": requests / wall,
        "ttft_p50_ms": 1000 * statistics.median(ttft),
        "ttft_p95_ms": 1000 * ttft[int(0.95 * (len(ttft) - 1))],
        "retrieval_p50_ms": statistics.median(r[2] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=160, help="requests per level")
    parser.add_argument("--soak", type=int, default=10_000, help="requests before last RSS")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.live_server import free_port
    from tests.openai_stub import OpenAIStub

    with tempfile.TemporaryDirectory() as tmp, OpenAIStub(reply="Answer [1].") as stub:
        env = bench_env(
            tmp,
            OPENAI_BASE_URL=stub.base_url,
            KBCHAT_LLM_MODEL="stub",
            KBCHAT_SERVER_RATE_LIMIT="1000000/minute",
        )
        subprocess.run(
            [sys.executable, "-m", "app.cli", "ingest", str(REPO / "examples/kb"), "--json"],
            env=env,
            check=True,
            cwd=REPO,
            capture_output=True,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with kbchat_serve(env, port) as server:
            run_level(base, 4, 20)  # warm up
            print(
                f"{'clients':>7} {'req/s':>7} {'TTFT p50':>9} {'TTFT p95':>9} {'retrieval p50':>14}"
            )
            done = 20
            for clients in (1, 8, 32):
                r = run_level(base, clients, args.requests)
                done += args.requests
                print(
                    f"{clients:>7} {r['rps']:>7.1f} {r['ttft_p50_ms']:>7.0f}ms "
                    f"{r['ttft_p95_ms']:>7.0f}ms {r['retrieval_p50_ms']:>12.1f}ms"
                )
            rss_start = rss_mb(server.pid)
            print(f"RSS after {done} requests: {rss_start:.0f} MB")
            run_level(base, 8, 100)
            done += 100
            rss_100 = rss_mb(server.pid)
            print(f"RSS after {done} requests: {rss_100:.0f} MB")
            started = time.perf_counter()
            run_level(base, 8, max(args.soak - done, 0))
            print(
                f"RSS after {args.soak} requests: {rss_mb(server.pid):.0f} MB "
                f"(growth {rss_mb(server.pid) - rss_100:+.0f} MB; soak took "
                f"{time.perf_counter() - started:.0f} s)"
            )


if __name__ == "__main__":
    main()
