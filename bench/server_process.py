"""What the server benchmarks share: a real `kbchat serve` subprocess on loopback over a temporary
data dir (reusing the materialised model), started, awaited until ready, and always stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def bench_env(data_dir: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's kbchat processes; the checkout's model is linked in."""
    models = REPO / "data" / "models"
    if models.is_dir() and not (Path(data_dir) / "models").exists():
        os.symlink(models, Path(data_dir) / "models")  # reuse the materialised model
    return {**os.environ, "KBCHAT_DATA_DIR": data_dir, "HF_HUB_OFFLINE": "1", **extra}


def ingest_examples(env: dict[str, str]) -> None:
    """`kbchat ingest examples/kb` into the environment's data dir, as a user would run it."""
    subprocess.run(
        [sys.executable, "-m", "app.cli", "ingest", str(REPO / "examples/kb"), "--json"],
        env=env,
        check=True,
        cwd=REPO,
        capture_output=True,
    )


def status_kb(pid: int, field: str) -> int:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def kbchat_serve(
    env: dict[str, str], port: int, command: list[str] | None = None, *, settled: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """`kbchat serve` on 127.0.0.1:port, yielded once /api/ready answers 200. `command`: what
    runs instead of `python -m app.cli serve` (given `--port PORT` after it). `settled`: also
    wait until the web UI, built in the background after ready, is up (it and the start-up
    warm-up take seconds of CPU that a throughput measurement must not share)."""
    command = command or [sys.executable, "-m", "app.cli", "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=2)
                if answer.is_success and (not settled or answer.json().get("ui", True)):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("server did not become ready")
            time.sleep(0.5)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)
