"""A real redis-server for tests: started on a free loopback port, nothing saved to disk, and
always stopped. Tests that need one skip with a clear reason when the binary is missing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BINARY = "redis-server"


def free_port() -> int:
    """A free loopback port above 20000 (the OS picks among its ephemeral ports)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port > 20000:
            return port
    raise RuntimeError("no free port above 20000")


class RedisServer:
    """One redis-server process; `stop()` and `start()` again on the same port and folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            pytest.skip(f"{BINARY} is not installed (apt-get install redis-server)")
        self.binary, self.folder = binary, folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def stored_keys(self) -> list[str]:
        import redis

        client = redis.Redis.from_url(self.url, decode_responses=True)
        return sorted(str(k) for k in client.keys("*"))


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A running redis-server in `folder`, stopped on the way out whatever happened."""
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
