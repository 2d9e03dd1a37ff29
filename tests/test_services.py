"""tests/services.py itself: a server it started dies with the process that started it, even
when that process is killed (kill -9) and no `finally` runs, so no test run leaves a server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import REPO, require

STARTER = """
import sys, time
from tests.services import start_postgres, start_redis
with {"postgres": start_postgres, "redis": start_redis}[sys.argv[1]]() as server:
    print(server.process.pid, server.port, server.log.parent, flush=True)
    time.sleep(600)
"""


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie nobody reaped yet has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_a_server_dies_with_the_process_that_started_it(server: str) -> None:
    require(server)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, server], stdout=subprocess.PIPE, cwd=REPO, env=env
    )
    pid, folder = 0, ""
    try:
        assert starter.stdout is not None
        said = starter.stdout.readline().split()  # once the server answers
        pid, port, folder = int(said[0]), int(said[1]), said[2]
        assert running(pid) and listening(port)
        starter.send_signal(signal.SIGKILL)
        starter.wait(30)
        deadline = time.monotonic() + 30
        while (running(pid) or listening(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(pid), f"{server} (pid {pid}) outlived the process that started it"
        assert not listening(port)
    finally:
        starter.kill()
        starter.wait(30)
        if pid and running(pid):  # this test failed: leave no server behind all the same
            os.kill(pid, signal.SIGKILL)
        if folder:  # the starter's `finally` did not run either
            shutil.rmtree(folder, ignore_errors=True)
