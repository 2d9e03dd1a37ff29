"""A real OpenAI-compatible HTTP server on loopback, for integration tests (standard library only).

`OpenAIStub` runs a `ThreadingHTTPServer` in a daemon thread and answers the two endpoints a chat
client needs: `POST /v1/chat/completions` (plain JSON or server-sent events when `"stream": true`)
and `GET /v1/models`. Tests point the real `openai` client (or `langchain_openai.ChatOpenAI`) at
`stub.base_url`, so the whole HTTP path is exercised, then inspect what was sent::

    with OpenAIStub(reply="Paris [1].") as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        ...
        assert "Paris" in stub.all_prompt_text()

Fault injection goes through `mode`:

* ``"ok"``   - answer normally (the default);
* ``"500"``  - HTTP 500 with an OpenAI-style ``server_error`` body;
* ``"429"``  - HTTP 429, ``Retry-After: 0``, ``rate_limit_exceeded`` body;
* ``"hang"`` - wait `hang_seconds` before answering normally (stop() interrupts the wait);
* ``"down"`` - stop listening, so clients get "connection refused" (permanent);
* ``"cut"``  - a stream sends `cut_after` content pieces, then the socket closes: no
  ``finish_reason``, no ``[DONE]``, the body simply ends (a proxy or server that died midway).
  Non-streaming requests get a truncated JSON body.

With `hold_after` set, a stream sends that many content pieces, then waits for the `release`
event (or stop()) before the rest: a browser test sees a half-streamed answer (or none yet).

With `piece_delay` set, a stream waits that long before each content piece after the first, and
`abandoned` tells whether a client closed the stream before its end.

With `fail_times` set, ``"500"`` / ``"429"`` / ``"hang"`` / ``"cut"`` apply only to the first N
chat requests (counted from the start, all modes included); later ones are answered normally.
Every chat request is recorded in `requests` / `headers` before any fault is applied.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["MODES", "OpenAIStub", "condensing"]

MODES = ("ok", "500", "429", "hang", "down", "cut")

_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def _split_pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to exactly `text` (each word keeps its trailing spaces)."""
    return re.findall(r"\s+|\S+\s*", text)


def _message_text(content: Any) -> str:
    """A message's content as text: a plain string or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def _count_tokens(text: str) -> int:
    """A rough token count (whitespace-separated words): only so `usage` holds plausible ints."""
    return len(text.split())


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # handler threads never hold up interpreter exit or server_close()
    request_queue_size = 128  # the listen backlog (socketserver's 5 refused bursts of chats)
    stub: OpenAIStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, closed stream) is routine here; stay quiet.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing ----------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        return  # silence the default per-request logging to stderr

    def _send_json(self, status: int, body: dict[str, Any], **headers: str) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- endpoints ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        with contextlib.suppress(*_DISCONNECTS):
            if self.path.rstrip("/") == "/v1/models":
                self._send_json(200, self.server.stub.models_body())
            else:
                self._send_json(404, _error_body(f"no route GET {self.path}", "invalid_request"))

    def do_POST(self) -> None:
        with contextlib.suppress(*_DISCONNECTS):
            self._do_post()

    def _do_post(self) -> None:
        raw = self._read_body()
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, _error_body(f"no route POST {self.path}", "invalid_request"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, _error_body("request body is not JSON", "invalid_request"))
            return
        if not isinstance(body, dict):
            self._send_json(400, _error_body("request body is not an object", "invalid_request"))
            return

        stub = self.server.stub
        fault = stub._record(body, {k.lower(): v for k, v in self.headers.items()})
        if fault == "500":
            self._send_json(500, _error_body("stub failure", "server_error"))
            return
        if fault == "429":
            self._send_json(
                429,
                _error_body("stub rate limit", "rate_limit_exceeded", "rate_limit_exceeded"),
                Retry_After="0",
            )
            return
        if fault == "hang" and not stub._wait_hang():
            return  # stop() was called while hanging: drop the request

        try:
            text = stub._reply_text(body)
        except Exception as exc:  # a broken reply function shows up as a server error
            self._send_json(500, _error_body(f"stub reply failed: {exc!r}", "server_error"))
            return
        if fault == "cut":
            self._cut(body, text)
        elif body.get("stream"):
            self._stream(body, text)
        else:
            self._send_json(200, stub._completion(body, text))

    def _stream(self, body: dict[str, Any], text: str) -> None:
        stub = self.server.stub
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

        def send(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
            self.wfile.flush()

        for number, chunk in enumerate(stub._chunks(body, text)):
            if number == (stub.hold_after if stub.hold_after is not None else -2) + 1:
                stub._wait_release()  # chunk 0 is the role; then `hold_after` content pieces
            if number > 1 and stub.piece_delay and stub._stop.wait(stub.piece_delay):
                return
            try:
                send(json.dumps(chunk))
            except _DISCONNECTS:
                stub.abandoned.set()  # the client closed the stream before its end
                raise
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")  # end of the chunked body
        self.wfile.flush()

    def _cut(self, body: dict[str, Any], text: str) -> None:
        """Send the start of the answer, then close: the body ends where the connection does."""
        stub = self.server.stub
        self.send_response(200)
        self.close_connection = True
        if body.get("stream"):
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")  # no length, not chunked: EOF ends the body
            self.end_headers()
            for chunk in stub._chunks(body, text)[: 1 + stub.cut_after]:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
        else:
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(json.dumps(stub._completion(body, text)).encode()[:40])
        self.wfile.flush()


class OpenAIStub:
    """An OpenAI-compatible chat server on ``127.0.0.1`` (random free port), for tests.

    `reply` is the assistant text for every chat completion, or a function of the parsed request
    JSON that returns it. Use as a context manager, or call `start()` / `stop()`.
    """

    def __init__(self, reply: Callable[[dict[str, Any]], str] | str = "Stub answer [1].") -> None:
        self.reply: Callable[[dict[str, Any]], str] | str = reply
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.hang_seconds: float = 30.0
        self.cut_after: int = 3  # content pieces a "cut" stream sends before closing
        self.fail_times: int | None = None
        # A stream pauses after `hold_after` content pieces until `release` is set (or stop()):
        # a test sees a half-streamed answer for as long as it needs, with no timing involved.
        self.hold_after: int | None = None
        self.release = threading.Event()
        # Seconds between content pieces of a stream (a slow model); `abandoned` is set when a
        # client closes a stream before its end (the next piece cannot be written).
        self.piece_delay: float = 0.0
        self.abandoned = threading.Event()
        self.base_url: str = ""
        self._mode = "ok"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._served = 0  # chat requests seen, for `fail_times`
        self._ids = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenAIStub:
        if self._server is not None:
            raise RuntimeError("OpenAIStub already started")
        self._stop.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stub = self
        port = server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._server = server
        if self._mode == "down":  # keep the port (and base_url) but never listen
            self._close_listener()
            return self
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-stub-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; in-flight "hang" requests are released at once. Safe to call twice."""
        self._stop.set()
        self._close_listener()
        self._server = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()  # ends serve_forever (polls every 50 ms)
            thread.join(timeout=5)
        server.server_close()  # closes the listening socket: new connections are refused

    # -- fault mode --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown OpenAIStub mode {value!r}; expected one of {MODES}")
        if self._mode == "down" and value != "down" and self._server is not None:
            raise ValueError("OpenAIStub cannot come back up after 'down'; start a new one")
        self._mode = value
        if value == "down" and self._server is not None:
            self._close_listener()

    # -- inspection helpers ------------------------------------------------------------------

    def last_user_message(self) -> str:
        """Content of the last ``role == "user"`` message of the last request ("" if none)."""
        if not self.requests:
            raise AssertionError("OpenAIStub received no chat requests")
        for message in reversed(self.requests[-1].get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return _message_text(message.get("content"))
        return ""

    def all_prompt_text(self, index: int = -1) -> str:
        """Every message content of request `index`, joined with newlines."""
        if not self.requests:
            raise AssertionError("OpenAIStub received no chat requests")
        messages = self.requests[index].get("messages") or []
        return "\n".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))

    # -- used by the handler -----------------------------------------------------------------

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> str:
        """Record one chat request; return the mode that applies to it."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            number = self._served
            self._served += 1
            mode = self._mode
        if self.fail_times is not None and number >= self.fail_times:
            return "ok"
        return mode

    def _wait_hang(self) -> bool:
        """Sleep `hang_seconds` in small steps; False if stop() came first."""
        deadline = time.monotonic() + self.hang_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._stop.wait(min(0.05, left)):
                return False

    def _wait_release(self) -> None:
        """Wait for `release` (set by the test) or stop(), whichever comes first."""
        while not self.release.wait(0.05):
            if self._stop.is_set():
                return

    def _reply_text(self, body: dict[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-stub-{self._ids}"

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        messages = body.get("messages") or []
        prompt = "\n".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))
        prompt_tokens = _count_tokens(prompt)
        completion_tokens = _count_tokens(text)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "stub-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, text),
        }

    def _chunks(self, body: dict[str, Any], text: str) -> list[dict[str, Any]]:
        id_, created, model = self._next_id(), int(time.time()), body.get("model") or "stub-model"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": id_,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": piece}) for piece in _split_pieces(text)]
        chunks.append(chunk({}, "stop"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            chunks.append(
                {
                    "id": id_,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": self._usage(body, text),
                }
            )
        return chunks

    @staticmethod
    def models_body() -> dict[str, Any]:
        """The `GET /v1/models` answer."""
        return {
            "object": "list",
            "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}],
        }


def condensing(answer: str, standalone: str | None = None) -> Callable[[dict[str, Any]], str]:
    """A reply for kbchat's chain: condense requests (recognised by their prompt) get
    `standalone`, or the follow-up itself when None; answer requests get `answer`."""

    def reply(request: dict[str, Any]) -> str:
        text = "\n".join(_message_text(m.get("content")) for m in request.get("messages", []))
        if "Standalone question" not in text:
            return answer
        if standalone is not None:
            return standalone
        found = re.search(r"Follow-up question: (.*)", text)
        return found.group(1) if found else ""

    return reply
