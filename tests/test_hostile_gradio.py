"""Hostile input against the mounted Gradio UI over real HTTP: no file outside Gradio's own upload
cache ever comes back, whatever an anonymous client puts in any argument of any event."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.live_server import live_server
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration

ADMIN = "admin-secret-gradio"
DOC = (
    "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a suspended monorail "
    "in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper."
)
FILE_META = {"_type": "gradio.FileData"}


class Hostile:
    """A running app, a canary file outside its data dir, and a Gradio queue client."""

    def __init__(self, base: str, canary: Path, token: str) -> None:
        self.base, self.canary, self.token = base, canary, token
        self.http = httpx.Client(base_url=base, timeout=60)
        self.bodies: list[str] = []  # every response body seen, for the final leak check

    def get(self, url: str) -> httpx.Response:
        r = self.http.get(url)
        self.bodies.append(r.text)
        return r

    def config(self) -> dict[str, Any]:
        r = self.http.get("/config")
        r.raise_for_status()
        return dict(r.json())

    def call(
        self, fn_index: int, data: list[Any], event_data: Any = None, session: str | None = None
    ) -> list[dict[str, Any]]:
        """Join the queue with `data`, read the SSE stream to completion, return its messages."""
        session = session or uuid.uuid4().hex
        joined = self.http.post(
            "/gradio_api/queue/join",
            json={
                "data": data,
                "fn_index": fn_index,
                "session_hash": session,
                "event_data": event_data,
            },
        )
        self.bodies.append(joined.text)
        if joined.status_code != 200:
            return [{"msg": "refused", "status": joined.status_code, "body": joined.text}]
        messages: list[dict[str, Any]] = []
        with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": session}
        ) as stream:
            for line in stream.iter_lines():
                self.bodies.append(line)
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                messages.append(msg)
                if msg.get("msg") in {"process_completed", "close_stream", "unexpected_error"}:
                    break
        return messages

    def follow_file_links(self) -> list[str]:
        """GET every /gradio_api/file= link any response mentioned; the bodies join the check."""
        links = set()
        for body in list(self.bodies):
            for part in body.split('"'):
                if "/gradio_api/file=" in part:
                    links.add(part[part.index("/gradio_api/file=") :])
        for link in sorted(links):
            self.get(link)
        return sorted(links)

    def leaked(self) -> bool:
        return any(self.token in body for body in self.bodies)


@pytest.fixture(scope="module")
def kb(ingest_docs: Any) -> Path:
    return ingest_docs("hostile-gradio", {"monorail.md": DOC})


@pytest.fixture
def hostile(
    kb: Path, tmp_path: Path, e5: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hostile]:
    from app.server.app import create_app
    from app.settings import load_settings

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))  # this test's own cache
    token = f"CANARY-{secrets.token_hex(16)}"
    canary = tmp_path / "secret-canary.txt"  # outside the data dir
    canary.write_text(f"{token}\n", encoding="utf-8")
    with OpenAIStub(reply=lambda _: "It opened in 1901 [1].") as stub:
        settings = load_settings(
            data_dir=kb / "data",
            database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0, "timeout": 5},
            admin_api_key=ADMIN,
        )
        with live_server(create_app(settings, embedder=e5)) as base:
            yield Hostile(base, canary, token)


def file_refs(path: str) -> list[Any]:
    """A file reference in every shape Gradio's payload walker or a component might accept."""
    data = {"path": path, "meta": FILE_META}
    return [
        data,
        {"path": path},
        [data],
        [{"role": "user", "content": [{"type": "file", "file": data}]}],
        [{"role": "user", "content": {"path": path}}],
        {"file": data},
        {"value": data, "__type__": "update"},
    ]


def dependency(config: dict[str, Any], elem_id: str, event: str) -> dict[str, Any]:
    """The event listener that `event` on the component with `elem_id` triggers."""
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    return next(d for d in config["dependencies"] if [ids[0], event] in d["targets"])


def benign_value(config: dict[str, Any], component_id: int) -> Any:
    """What the page would send for an input: a question in text boxes, else the default, so
    the hostile argument reaches the handler's body instead of an early return."""
    component = next(c for c in config["components"] if c["id"] == component_id)
    if component.get("type") == "textbox":
        return "When did it open?"
    return component.get("props", {}).get("value")


def copies_in_cache(cache: Path, token: str) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]


def test_history_file_reference_does_not_leak_a_file(hostile: Hostile, tmp_path: Path) -> None:
    """The reported exploit: a file message in the chat history (the chat event's second
    argument before the fix) comes back as a /gradio_api/file= link to a copy of the file."""
    dep = dependency(hostile.config(), "kbchat-send", "click")
    message = {"type": "file", "file": {"path": str(hostile.canary), "meta": FILE_META}}
    history = [
        {"role": "user", "content": [message]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
    ]
    data: list[Any] = ["When did it open?", history, None, "default", {}, None]  # no assistant
    messages = hostile.call(dep["id"], data[: len(dep["inputs"])])
    links = hostile.follow_file_links()
    assert not hostile.leaked(), f"canary leaked through {links}"
    assert not copies_in_cache(tmp_path / "gradio-cache", hostile.token)
    # the question itself still gets its answer
    done = [m for m in messages if m.get("msg") == "process_completed"]
    assert done and done[0]["success"], messages[-1]
    assert "1901" in json.dumps(done[0]["output"])


def test_no_argument_of_any_event_reads_a_file(hostile: Hostile, tmp_path: Path) -> None:
    """Every dependency in /config, every input position (and the like event's data), every
    shape of file reference: the canary's content never comes back, nor lands in the cache."""
    config = hostile.config()
    calls: list[tuple[int, list[Any], Any]] = []
    for dep in config["dependencies"]:
        if not dep.get("backend_fn"):
            continue
        benign = [benign_value(config, i) for i in dep["inputs"]]
        for ref in file_refs(str(hostile.canary)):
            for position in range(max(len(benign), 1)):
                data = [*benign] or [None]
                data[position] = ref
                calls.append((dep["id"], data, None))
            if dep.get("collects_event_data"):
                event = {"index": ref, "value": ref, "liked": True}
                calls.append((dep["id"], benign, event))
    assert len(config["dependencies"]) >= 10 and len(calls) >= 100
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda c: hostile.call(*c), calls))
    assert all(results), "every call was answered"
    for url in (f"/gradio_api/file={hostile.canary}", "/gradio_api/file=/etc/passwd"):
        assert hostile.get(url).status_code in {403, 404}
        assert hostile.get(f"/gradio_api/file={quote(url.split('=', 1)[1])}").status_code in {
            403,
            404,
        }
    links = hostile.follow_file_links()
    assert not hostile.leaked(), f"canary leaked; links seen: {links}"
    assert not any("root:x:0:0" in body for body in hostile.bodies)
    assert not copies_in_cache(tmp_path / "gradio-cache", hostile.token)


@pytest.fixture
def file_host(hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A loopback web server holding the canary, which Gradio's SSRF guard is told is public
    (as any host on the internet would be): (its base URL, the paths it was asked for)."""
    import functools
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    async def public(hostname: str) -> str:
        return "127.0.0.1"

    monkeypatch.setattr("safehttpx.async_validate_url", public)
    handler = functools.partial(Handler, directory=str(hostile.canary.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def test_no_url_is_fetched_for_a_client(
    hostile: Hostile, file_host: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Gradio downloads a file reference whose path is a URL, and `/gradio_api/file=<url>`
    streams any public URL: neither happens, so the server is nobody's download proxy."""
    base, hits = file_host
    url = f"{base}/{hostile.canary.name}"
    config = hostile.config()
    send = dependency(config, "kbchat-send", "click")
    upload_dep = dependency(config, "kbchat-kb-upload", "click")
    ref = {"path": url, "url": url, "meta": FILE_META}
    replies = [
        hostile.call(send["id"], [ref, None, None, "default", {}, None][: len(send["inputs"])]),
        hostile.call(upload_dep["id"], [None, "uploads", [ref]]),
    ]
    deep = "[" * 100_000 + "]" * 100_000  # a JSON nesting no page sends
    nested = hostile.http.post(
        "/gradio_api/queue/join",
        content=f'{{"data": {deep}, "fn_index": {send["id"]}}}',
        headers={"content-type": "application/json"},
    )
    assert nested.status_code < 500
    direct = hostile.get(f"/gradio_api/file={url}")
    hostile.follow_file_links()
    assert hits == [], f"fetched for a client: {hits}; leaked: {hostile.leaked()}"
    assert not hostile.leaked()
    assert not copies_in_cache(tmp_path / "gradio-cache", hostile.token)
    assert direct.status_code == 403
    assert all(reply[0].get("status") == 400 for reply in replies), replies


def test_file_route_serves_no_data_or_working_dir_file(hostile: Hostile, kb: Path) -> None:
    """The data dir (conversations, Chroma), the knowledge-base folder and the working directory
    (where `.env` lives) are blocked even for names Gradio would otherwise consider its own."""
    targets = [
        kb / "data" / "chroma" / "chroma.sqlite3",
        kb / "docs" / "monorail.md",
        Path.cwd() / "pyproject.toml",
    ]
    for target in targets:
        assert target.exists()
        r = hostile.get(f"/gradio_api/file={target}")
        assert r.status_code == 403, (target, r.status_code)
    # nor does the UI keep run records or offer Hugging Face bucket routes
    assert hostile.get("/runs").status_code == 404
    assert hostile.get("/gradio_api/run-history/records").status_code == 404


def upload(hostile: Hostile, name: str, data: bytes) -> str:
    r = hostile.http.post("/gradio_api/upload", files=[("files", (name, data, "text/markdown"))])
    r.raise_for_status()
    return str(r.json()[0])


def unlock_and_create(hostile: Hostile, name: str) -> tuple[str, dict[str, Any]]:
    """(a session with the console unlocked and knowledge base `name` created, the upload
    event's listener)."""
    config = hostile.config()
    unlock = dependency(config, "kbchat-console-unlock", "click")
    create = dependency(config, "kbchat-kb-create", "click")
    session = uuid.uuid4().hex
    unlocked = hostile.call(unlock["id"], [ADMIN], session=session)
    assert "Console unlocked." in json.dumps(unlocked[-1])
    created = hostile.call(create["id"], [None, name], session=session)[-1]
    assert created["success"], created
    return session, dependency(config, "kbchat-kb-upload", "click")


def test_console_events_need_this_sessions_unlock(hostile: Hostile, kb: Path) -> None:
    """Another session's unlock opens nothing: a console event from a session that never
    unlocked (or typed a wrong key) is refused, whatever knowledge base or document it names."""
    config = hostile.config()
    unlock = dependency(config, "kbchat-console-unlock", "click")
    create = dependency(config, "kbchat-kb-create", "click")
    delete = dependency(config, "kbchat-kb-del-docs", "click")
    opened = uuid.uuid4().hex
    assert "Console unlocked." in json.dumps(hostile.call(unlock["id"], [ADMIN], session=opened))
    other = uuid.uuid4().hex
    assert "Wrong admin key." in json.dumps(hostile.call(unlock["id"], ["guess"], session=other))
    for session in (other, uuid.uuid4().hex):
        done = hostile.call(create["id"], [None, "stolen-kb"], session=session)[-1]
        assert not done["success"] and "Unlock the console" in json.dumps(done), done
        gone = hostile.call(
            delete["id"], [None, "hostile-gradio", ["monorail.md"]], session=session
        )
        assert not gone[-1]["success"], gone[-1]  # refused by Gradio's choices or the gate
    assert not (kb / "data" / "collections" / "stolen-kb").exists()
    assert (kb / "docs" / "monorail.md").exists()


def test_admin_upload_reads_only_files_uploaded_here(
    hostile: Hostile, kb: Path, tmp_path: Path
) -> None:
    """After unlocking, a file uploaded through /gradio_api/upload is saved and indexed, and its
    cache copy deleted."""
    session, send = unlock_and_create(hostile, "uploads")

    path = upload(hostile, "volcano.md", b"# Vesuvius\n\nMount Vesuvius buried Pompeii in 79.")
    ref = {"path": path, "orig_name": "volcano.md", "meta": FILE_META}
    done = hostile.call(send["id"], [None, "uploads", [ref]], session=session)[-1]
    assert done["success"] and "Uploaded 1 file(s)" in json.dumps(done["output"]), done
    assert (kb / "data" / "collections" / "uploads" / "volcano.md").exists()
    assert not Path(path).exists()  # consumed: nobody can fetch the cached copy any more


def test_admin_upload_refuses_files_not_uploaded_here(
    hostile: Hostile, kb: Path, tmp_path: Path
) -> None:
    """Even after unlocking, a path outside Gradio's cache or a symlink planted inside it is
    refused: nothing is read, saved into the collection or served back."""
    session, send = unlock_and_create(hostile, "uploads2")

    link = tmp_path / "gradio-cache" / "planted" / "link.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(hostile.canary)
    for bad in (str(hostile.canary), str(link), "/etc/passwd"):
        ref = {"path": bad, "orig_name": "x.md", "meta": FILE_META}
        for data in ([None, "uploads2", [ref]], [None, "uploads2", [bad]]):
            done = hostile.call(send["id"], data, session=session)[-1]
            shown = json.dumps(done)
            assert "Uploaded" not in shown and "Choose a knowledge base" not in shown, (bad, shown)
    # one refused file refuses the batch: the good one is neither saved nor consumed
    good = upload(hostile, "batch.md", b"# Batch\n\nA file uploaded next to a stolen one.")
    batch = [{"path": good, "meta": FILE_META}, {"path": str(link), "meta": FILE_META}]
    done = hostile.call(send["id"], [None, "uploads2", batch], session=session)[-1]
    assert "Uploaded" not in json.dumps(done) and Path(good).exists()
    assert "Choose a knowledge base" not in json.dumps(done)  # refused for the file, not the name
    saved = kb / "data" / "collections" / "uploads2"
    assert not (saved / "batch.md").exists()
    assert not any(hostile.token in p.read_text() for p in saved.glob("*") if p.is_file())
    hostile.follow_file_links()
    assert not hostile.leaked()


def test_anonymous_uploads_expire(
    kb: Path, tmp_path: Path, e5: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may upload to Gradio (the console needs it before unlocking), so what is
    uploaded and never used is deleted on the Blocks' cleanup schedule (shortened here)."""
    import time

    from app.server.app import create_app
    from app.settings import load_settings

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))
    monkeypatch.setattr("app.server.ui.CACHE_CLEANUP", (1, 1), raising=False)
    settings = load_settings(
        data_dir=kb / "data", database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}"
    )
    with live_server(create_app(settings, embedder=e5, llm=None)) as base:
        visitor = Hostile(base, tmp_path / "none", "unused")
        path = upload(visitor, "note.txt", b"left behind")
        assert visitor.get(f"/gradio_api/file={path}").text == "left behind"
        deadline = time.monotonic() + 30  # generous: the check runs every second
        while Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(path).exists()
        assert visitor.get(f"/gradio_api/file={path}").status_code in {403, 404}


def test_read_upload_takes_only_regular_files_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.server.services import BadRequest
    from app.server.ui_files import read_upload

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    (cache / "abc").mkdir(parents=True)
    good = cache / "abc" / "doc.txt"
    good.write_bytes(b"hello")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (cache / "abc" / "link.txt").symlink_to(outside)
    (cache / "abc" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    (cache / "top.txt").write_bytes(b"not in an upload folder")
    refused = [
        outside,
        cache / "abc" / "link.txt",
        cache / "abc" / "dirlink" / "secret.txt",
        cache / "abc",
        cache / "abc" / ".." / ".." / "secret.txt",
        cache / "top.txt",
        cache / "abc" / "missing.txt",
        Path("/etc/passwd"),
    ]
    for path in refused:
        with pytest.raises(BadRequest, match="not uploaded through this page"):
            read_upload(path)
    assert read_upload(str(good)) == b"hello"
    assert not good.exists() and outside.read_bytes() == b"secret"


def test_blocked_paths_cover_the_data_and_kb_folders_but_never_the_upload_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from app.server.ui_files import blocked_paths
    from app.settings import load_settings

    data, kb = tmp_path / "data", tmp_path / "my-docs"
    services: Any = SimpleNamespace(
        settings=load_settings(data_dir=data),
        collections=lambda: [{"name": "docs", "folder": str(kb)}, {"name": "x", "folder": None}],
    )
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    blocked = blocked_paths(services)
    for folder in (data, data / "collections", kb, Path.cwd(), Path("/etc"), Path("/proc")):
        assert str(folder.resolve()) in blocked
    # a cache inside the data dir: blocking the data dir would refuse every upload
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(data / "gradio-cache"))
    blocked = blocked_paths(services)
    assert str(data.resolve()) not in blocked and str((data / "collections").resolve()) in blocked
