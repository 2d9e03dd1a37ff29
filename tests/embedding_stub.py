"""A real OpenAI-compatible `/v1/embeddings` server on loopback, for tests (standard library only).

It embeds exactly the strings it receives with the `encode` function it is given (the real
sentence-transformers model in the tests), so it behaves like TEI or vLLM: no prefixes of its
own. Every request's inputs and Authorization header are recorded. Faults go through `mode`:

* ``"ok"``        - answer normally;
* ``"scaled"``    - answer with the vectors times 3 (a server that does not normalise);
* ``"500"``       - HTTP 500 with an OpenAI-style error body that echoes the Authorization header
  (a careless server; kbchat must not pass it on);
* ``"wrong_dim"`` - vectors one number short;
* ``"malformed"`` - a 200 whose body is not JSON;
* ``"short"``     - one vector fewer than texts;
* ``"huge"``      - a 200 that streams far more bytes than any answer needs;
* ``"hang"``      - wait `hang_seconds` before answering (stop() interrupts the wait);
* ``"trickle"``   - send the headers, then one byte every 0.2 s (never finishes in time).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MODES = ("ok", "scaled", "500", "wrong_dim", "malformed", "short", "huge", "hang", "trickle")


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class EmbeddingStub:
    def __init__(
        self, encode: Callable[[list[str]], np.ndarray], mode: str = "ok", hang_seconds: float = 30
    ) -> None:
        assert mode in MODES, mode
        self.encode, self.mode, self.hang_seconds = encode, mode, hang_seconds
        self.inputs: list[list[str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingStub:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def all_inputs(self) -> list[str]:
        return [text for batch in self.inputs for text in batch]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _send(self, code: int, body: bytes, length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(raw)
                texts = (
                    request["input"] if isinstance(request["input"], list) else [request["input"]]
                )
                stub.inputs.append(texts)
                stub.bodies.append(request)
                stub.auth.append(self.headers.get("Authorization"))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(texts, stub.mode)  # a client that gave up is no error

            def _answer(self, texts: list[str], mode: str) -> None:
                if mode == "hang":
                    stub._stop.wait(stub.hang_seconds)
                if mode == "500":
                    error = {"message": f"boom; you sent {self.headers.get('Authorization')}"}
                    self._send(
                        500, json.dumps({"error": {**error, "type": "server_error"}}).encode()
                    )
                    return
                if mode == "malformed":
                    self._send(200, b"<html>not json</html>")
                    return
                if mode == "huge":
                    self._send(200, b"", length=200_000_000)
                    chunk = b"[" + b"0.1," * 16384
                    for _ in range(12_000):  # about 800 MB at most; the client must stop first
                        if stub._stop.is_set():
                            return
                        self.wfile.write(chunk)
                    return
                if mode == "trickle":
                    self._send(200, b"", length=1_000_000)
                    for _ in range(1_000_000):
                        if stub._stop.wait(0.2):
                            return
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    return
                vectors = np.asarray(stub.encode(texts), dtype=np.float32)
                if mode == "scaled":
                    vectors = vectors * 3
                if mode == "wrong_dim":
                    vectors = vectors[:, :-1]
                if mode == "short":
                    vectors = vectors[:-1]
                data = [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ]
                body = {
                    "object": "list",
                    "data": data,
                    "model": "stub",
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
                self._send(200, json.dumps(body).encode())

        return Handler
