"""Cold start of `kbchat serve`, `kbchat search` and `kbchat ask`, with the model already prepared.

Over a temporary data dir holding the example knowledge base (the checkout's materialised model
linked in), each repeat:
  * starts `kbchat serve` on a free loopback port and polls every 20 ms: seconds until
    /api/health answers (imports, app factory, uvicorn listening), until /api/ready answers
    200 (the model loaded: the first request does not pay for it) and until the web UI's page
    does (the UI is built after the server listens);
  * runs `kbchat search` and `kbchat ask --json` (LLM: the loopback stub) end to end;
and, in a fresh interpreter, runs the steps of a start one after the other (no overlap), so the
total can be read step by step, `import torch, sentence_transformers` (the torch backend's share)
among them. Every figure is wall seconds and CPU seconds (all threads): on a machine shared with
other work the wall time swings with the load, the CPU time much less, so compare CPU seconds
between runs made at different times. All traffic stays on 127.0.0.1.
Usage:  .venv/bin/python bench/cold_start.py [--repeats 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from server_process import REPO, bench_env, ingest_examples

# Where the time goes, one step at a time in one fresh interpreter (no overlap, unlike `serve`):
# wall and CPU seconds per step. The app is built once without, then once with the UI.
PHASES = """
import json, sys, time
marks = [(time.perf_counter(), time.process_time())]
def mark(): marks.append((time.perf_counter(), time.process_time()))
import app.cli; mark()
from app.settings import load_settings; settings = load_settings(); mark()
from app.server.app import create_app; mark()
from app.embeddings.e5 import build_embeddings; embedder = build_embeddings(settings); mark()
create_app(settings, embedder=embedder, with_ui=False); mark()
import app.server.ui; mark()
create_app(settings, embedder=embedder); mark()
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
import torch, sentence_transformers; mark()
embedder.preload(); embedder.model; mark()
print(json.dumps({"marks": marks, "heavy": heavy}))
"""
PHASE_NAMES = [
    "import app.cli",
    "settings",
    "import app.server.app",
    "resolve the model",
    "create_app without UI",
    "import gradio + UI",
    "create_app with UI",
    "import torch + s-t",
    "load the weights",
]


Timing = tuple[float, float]  # (wall seconds, CPU seconds of the process and its threads)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, all threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(url: str, proc: subprocess.Popen[bytes], started: float) -> Timing:
    """Wall seconds from `started` until `url` answers 200 (polled every 20 ms), and the CPU
    seconds the server had used by then."""
    deadline = started + 300
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started, _cpu_seconds(proc.pid)
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() > deadline:
                sys.exit(f"server did not answer 200 on {url}")
            time.sleep(0.02)


def time_serve(env: dict[str, str]) -> tuple[Timing, Timing, Timing]:
    """When /api/health, then /api/ready, then the web UI's page (built after the server
    listens: app/server/ui_deferred.py) first answered 200 in one `kbchat serve`."""
    from tests.live_server import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = _wait(f"{base}/api/health", proc, started)
        ready = _wait(f"{base}/api/ready", proc, started)
        ui = _wait(f"{base}/", proc, started)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return health, ready, ui


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(env: dict[str, str], *args: str) -> Timing:
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=REPO, check=True, capture_output=True
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def time_phases(env: dict[str, str]) -> tuple[list[Timing], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PHASES], env=env, cwd=REPO, check=True, capture_output=True
    )
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    marks = report["marks"]
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks)]
    return steps, report["heavy"]


def _row(label: str, values: list[Timing]) -> str:
    walls, cpus = [w for w, _ in values], [c for _, c in values]
    runs = " ".join(f"{w:5.1f}/{c:4.1f}" for w, c in values)
    return (
        f"{label:<30} wall {statistics.median(walls):6.2f} s  cpu {statistics.median(cpus):6.2f} s"
        f"   runs (wall/cpu) {runs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--data-dir",
        help="a data dir that already holds the example knowledge base (ingesting it into a"
        " fresh one takes minutes on a busy machine)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.openai_stub import OpenAIStub

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp, OpenAIStub(reply="Answer [1].") as stub:
        env = bench_env(
            args.data_dir or tmp, OPENAI_BASE_URL=stub.base_url, KBCHAT_LLM_MODEL="stub"
        )
        if args.data_dir is None:
            ingest_examples(env)
        results: dict[str, list[Timing]] = {}
        heavy: list[str] = []
        for _ in range(args.repeats):
            health, ready, ui = time_serve(env)
            results.setdefault("serve: /api/health 200", []).append(health)
            results.setdefault("serve: /api/ready 200", []).append(ready)
            results.setdefault("serve: / (web UI) 200", []).append(ui)
            results.setdefault("kbchat search", []).append(
                time_command(env, "search", "Wie lange dauert das Laden des Akkus?")
            )
            results.setdefault("kbchat ask", []).append(
                time_command(env, "ask", "When was Nordlicht Robotics founded?", "--json")
            )
            phases, heavy = time_phases(env)
            for name, timing in zip(PHASE_NAMES, phases, strict=True):
                results.setdefault(f"step: {name}", []).append(timing)
        for label, values in results.items():
            print(_row(label, values))
        print(f"heavy modules loaded by building the app: {', '.join(heavy) or 'none'}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
