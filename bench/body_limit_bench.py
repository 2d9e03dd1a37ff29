"""What an endless chunked body costs `kbchat serve`: RSS of the server process before and after
one POST /api/chat with `Transfer-Encoding: chunked` (no Content-Length) of --mib MiB.

Starts the real server as a subprocess on loopback (empty data dir, the materialised model),
sends the body on a raw socket, stops as soon as the server answers, and prints the status, how
much was sent by then, and the server's RSS and peak RSS. Usage:
  .venv/bin/python bench/body_limit_bench.py [--mib 400]
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import tempfile
import time

from server_process import REPO, bench_env, kbchat_serve, status_kb


def send_chunked(port: int, path: str, total: int, chunk: int = 256 * 1024) -> tuple[str, int]:
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
        try:
            while sent < total and not select.select([s], [], [], 0)[0]:
                s.sendall(piece)
                sent += chunk
            else:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        head = s.recv(4096).decode("latin-1")
    return head.split("\r\n", 1)[0], sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=400, help="body size to offer, MiB")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.live_server import free_port

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with kbchat_serve(bench_env(tmp), port) as server:
            before = status_kb(server.pid, "VmRSS")
            started = time.monotonic()
            status, sent = send_chunked(port, "/api/chat", args.mib * 2**20)
            seconds = time.monotonic() - started
            time.sleep(1)
            after, peak = status_kb(server.pid, "VmRSS"), status_kb(server.pid, "VmHWM")
            print(f"answer: {status} after {sent / 2**20:.1f} MiB sent in {seconds:.1f} s")
            print(
                f"server RSS before {before / 1024:.0f} MiB, after {after / 1024:.0f} MiB "
                f"(+{(after - before) / 1024:.0f}), peak {peak / 1024:.0f} MiB"
            )


if __name__ == "__main__":
    main()
