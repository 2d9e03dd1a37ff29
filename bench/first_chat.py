"""The first chat of a fresh `kbchat serve`: what it pays for one-off work (exemplar vectors, the
question's language statistics, building the chain) against the same server's next chat.

Over a data dir holding the example knowledge base (`--data-dir`, or one ingested now), each
repeat starts `kbchat serve`, waits for /api/ready, then at once sends one /api/chat question
(JSON, the loopback LLM stub) in a language the knowledge base does not hold, then a second
question in that language. Wall milliseconds of each, and the server's CPU seconds during it.
Run `kbchat model prepare` on the data dir first to measure a prepared deployment;
`--forget-language` deletes the language's statistics before each start (a language never met);
`--after-ui` waits for the web UI's page first (built after ready, it competes with the chat).
Usage:  .venv/bin/python bench/first_chat.py [--repeats 3] [--data-dir DIR] [--lang fi]
        [--forget-language]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from server_process import REPO, bench_env, cpu_seconds, ingest_examples, kbchat_serve

QUESTIONS = {  # two questions about the example knowledge base, per language
    "fi": ("Kuinka kauan akun lataaminen kestää?", "Milloin Nordlicht Robotics perustettiin?"),
    "af": ("Hoe lank neem dit om die battery te laai?", "Wanneer is Nordlicht Robotics gestig?"),
    "pl": ("Jak długo trwa ładowanie baterii?", "Kiedy założono Nordlicht Robotics?"),
}


def timed_chat(http: httpx.Client, pid: int, message: str) -> tuple[float, float]:
    cpu, started = cpu_seconds(pid), time.perf_counter()
    answer = http.post("/api/chat", json={"message": message})
    answer.raise_for_status()
    return (time.perf_counter() - started) * 1000, cpu_seconds(pid) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir")
    parser.add_argument("--lang", default="fi", choices=sorted(QUESTIONS))
    parser.add_argument("--forget-language", action="store_true")
    parser.add_argument(
        "--after-ui",
        action="store_true",
        help="send the first chat once the web UI answers (its build, after ready, is done)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.openai_stub import OpenAIStub
    from tests.services import free_port

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    first, second = [], []
    with tempfile.TemporaryDirectory() as tmp, OpenAIStub(reply="Answer [1].") as stub:
        env = bench_env(
            args.data_dir or tmp, OPENAI_BASE_URL=stub.base_url, KBCHAT_LLM_MODEL="stub"
        )
        if args.data_dir is None:
            ingest_examples(env)
        for _ in range(args.repeats):
            if args.forget_language:
                for path in Path(env["KBCHAT_DATA_DIR"]).glob(
                    f"language_reference/*/{args.lang}.npz"
                ):
                    path.unlink()
            port = free_port()
            with (
                kbchat_serve(env, port) as server,
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http,
            ):
                if args.after_ui:
                    http.get("/").raise_for_status()
                one, two = QUESTIONS[args.lang]
                first.append(timed_chat(http, server.pid, one))
                second.append(timed_chat(http, server.pid, two))
    for label, runs in (("first chat after ready", first), ("second chat", second)):
        ms = statistics.median(m for m, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        each = " ".join(f"{m:.0f}/{c:.2f}" for m, c in runs)
        print(f"{label:<24} {ms:7.0f} ms  cpu {cpu:5.2f} s   runs (ms/cpu s) {each}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
