"""The console's shell and Knowledge page handlers as the page calls them, over the real app
(real Chroma, the toy embedder): a locked page refused, a rotated key locking old pages, forged
knowledge-base names and path-traversing document names refused, and the create, upload, delete
and re-sync round trip with its report as plain table rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.server.ui_console import CONSOLE_LOCKED, ConsoleHandlers, Gate, key_digest
from app.server.ui_console_knowledge import KnowledgeHandlers
from tests.test_assistants import ADMIN, make_app

REQUEST = gr.Request(headers={}, client={"host": "192.0.2.7"})


class Console:
    """The console's handlers on a real app, with an unlocked page's state."""

    def __init__(self, app: Any, cache: Path) -> None:
        self.app, self.services, self.cache = app, app.state.services, cache
        self.shell = ConsoleHandlers(self.services, app.state.throttles, app.state.assistants)
        self.gate = Gate(self.services)
        self.kb = KnowledgeHandlers(self.services, self.gate)
        self.state = self.shell.unlock(ADMIN, REQUEST)[0]

    def uploaded(self, name: str, data: bytes) -> str:
        """A file as Gradio's upload route leaves it: in a folder of its own in the cache."""
        folder = self.cache / f"up{len(list(self.cache.glob('up*')))}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(data)
        return str(folder / name)

    def names(self) -> list[str]:
        return [str(c["name"]) for c in self.services.collections()]

    def sources(self, name: str) -> list[str]:
        from app.server.knowledge import list_documents

        return [d.source for d in list_documents(self.services, name).documents]


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    app = make_app(tmp_path)
    with TestClient(app):
        yield Console(app, cache)


def no_progress(*args: Any, **kwargs: Any) -> None:
    return None


def every_event(c: Console, state: Any) -> list[Any]:
    """Each Knowledge event with `state` and otherwise sensible arguments."""
    doc = c.uploaded("new.md", b"# New\n\nA new document.")
    kb = c.kb
    return [
        lambda: kb.refresh(state, "default"),
        lambda: kb.create(state, "fresh-kb"),
        lambda: kb.ask_delete(state, "shop"),
        lambda: kb.cancel_delete(state),
        lambda: kb.confirm_delete(state, "shop", "shop"),
        lambda: kb.upload(state, "default", [doc], no_progress),
        lambda: kb.delete_documents(state, "default", c.sources("default")[:1]),
        lambda: kb.resync(state, "default", no_progress),
    ]


def test_a_locked_page_is_refused_and_changes_nothing(console: Console) -> None:
    before = {name: console.sources(name) for name in console.names()}
    for state in (None, "", "unlocked", True, key_digest("not-the-key"), {"digest": 1}):
        for call in every_event(console, state):
            with pytest.raises(gr.Error, match="Unlock the console"):
                call()
    assert {name: console.sources(name) for name in console.names()} == before
    # after a failed unlock the page loads nothing, silently
    assert console.kb.load(None, "default") == (gr.skip(), gr.skip(), gr.skip())


def test_unlock_needs_the_key_and_a_rotated_key_locks_old_pages(console: Console) -> None:
    shell, gate = console.shell, console.gate
    state, panel, box, message = shell.unlock("wrong", REQUEST)
    assert state is None and panel["visible"] is False and box == "" and "Wrong" in message
    assert console.state == key_digest(ADMIN) and gate.is_open(console.state)
    assert ADMIN not in str(console.state)  # the state keeps a digest, never the key
    gate.check(console.state)
    console.kb.refresh(console.state, "default")

    console.services.settings.admin_api_key = SecretStr("rotated-admin-key")
    with pytest.raises(gr.Error, match="Unlock the console"):
        gate.check(console.state)
    with pytest.raises(gr.Error, match="Unlock the console"):
        console.kb.refresh(console.state, "default")
    assert shell.unlock("rotated-admin-key", REQUEST)[0] == key_digest("rotated-admin-key")

    console.services.settings.admin_api_key = None  # console off: nothing opens it
    assert not gate.is_open(console.state)
    state, _, _, message = shell.unlock("", REQUEST)
    assert state is None and "disabled" in message


def test_wrong_keys_are_throttled_like_the_admin_api(console: Console) -> None:
    client = gr.Request(headers={}, client={"host": "192.0.2.99"})
    messages = [console.shell.unlock(f"guess-{i}", client)[3] for i in range(40)]
    assert any("Too many wrong keys" in m for m in messages)
    # beyond the budget even the right key is not compared
    state, _, _, message = console.shell.unlock(ADMIN, client)
    assert state is None and "Too many wrong keys" in message


def test_forged_knowledge_base_names_are_refused(console: Console) -> None:
    kb, state = console.kb, console.state
    doc = console.uploaded("ok.md", b"# Ok\n\nFine.")
    forged: list[Any] = ["nope", "../default", "default/..", "", None, 7, ["default"], "DEFAULT"]
    for name in forged:
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (kb.upload, (state, name, [doc], no_progress)),
            (kb.resync, (state, name, no_progress)),
            (kb.delete_documents, (state, name, ["a.md"])),
            (kb.ask_delete, (state, name)),
            (kb.confirm_delete, (state, name, name)),
        ]
        for handler, args in calls:
            with pytest.raises(gr.Error, match="Choose a knowledge base from the list"):
                handler(*args)
    for bad in ("../etc", "ab", "x" * 300, "127.0.0.1", "<img src=x onerror=alert(1)>", "a..b"):
        with pytest.raises(gr.Error) as refused:
            kb.create(state, bad)
        assert "<img" not in refused.value.message  # the message is escaped for the modal
    with pytest.raises(gr.Error, match="exists already"):
        kb.create(state, "default")
    # the confirmation is about the knowledge base picked when it was asked
    pending, box, question = kb.ask_delete(state, "shop")
    assert pending == "shop" and box["visible"] is True and "shop" in question
    with pytest.raises(gr.Error, match="changed"):
        kb.confirm_delete(state, pending, "default")
    assert sorted(console.names()) == ["default", "shop"] and Path(doc).exists()


def test_path_traversing_document_names_are_refused(console: Console, tmp_path: Path) -> None:
    kb, state = console.kb, console.state
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nKeep me.", "utf-8")
    folder = console.services.folder("default").resolve()
    hostile: list[Any] = [
        ["../secret.md"],
        [str(outside)],
        ["/etc/passwd"],
        [f"{folder.name}/../../secret.md"],
        [".hidden.md"],
        [{"path": str(outside)}],
        "../secret.md",
        [None],
        ["x"] * 51,
    ]
    before = console.sources("default")
    for selected in hostile:
        with pytest.raises(gr.Error):
            kb.delete_documents(state, "default", selected)
    assert outside.exists() and console.sources("default") == before
    # a source of another knowledge base is not one of this one's
    other = console.sources("shop")[0]
    if other not in before:
        with pytest.raises(gr.Error, match="listed in"):
            kb.delete_documents(state, "default", [other])


def test_create_upload_delete_and_resync(console: Console) -> None:
    kb, state = console.kb, console.state
    out = kb.create(state, "  manuals  ")
    picker, table, doomed, summary, report, status, chat, box = out
    assert picker["value"] == "manuals" and "manuals" in picker["choices"]
    assert "manuals" in chat["choices"] and box == ""
    assert "Created" in status and table["value"] == []

    good = console.uploaded("guide.md", b"# Guide\n\nHow to reset the router: hold the button.")
    broken = console.uploaded("broken.pdf", b"not a pdf at all")
    out = kb.upload(state, "manuals", [good, broken], no_progress)
    picker, table, doomed, summary, report, status, chat, files = out
    assert files is None and not Path(good).exists() and not Path(broken).exists()
    assert "1 added" in summary and "1 failed" in summary
    rows = report["value"]
    failed = next(r for r in rows if r[0] == "broken.pdf")
    assert failed[1] == "failed" and "PDF" in failed[2]
    docs = table["value"]
    by_source = {row[0]: row for row in docs}
    assert table["label"] == "Documents (2)"
    assert by_source["guide.md"][1] == "indexed" and by_source["broken.pdf"][1] == "failed"
    assert "PDF" in by_source["broken.pdf"][2]
    assert all(isinstance(c, str) for row in docs for c in row)  # plain text cells
    assert by_source["guide.md"][5].endswith(" B") and by_source["guide.md"][6].endswith("UTC")
    assert sorted(doomed["choices"]) == ["broken.pdf", "guide.md"]

    out = kb.delete_documents(state, "manuals", ["guide.md"])
    assert "1 removed" in out[3] and "Deleted 1 document" in out[5]
    assert console.sources("manuals") == ["broken.pdf"]
    assert "removed" in [r[1] for r in out[4]["value"]]

    # a document that went from the folder meanwhile is reported, the others still deleted
    again = console.uploaded("again.md", b"# Again\n\nAnother guide.")
    kb.upload(state, "manuals", [again], no_progress)
    (console.services.folder("manuals") / "broken.pdf").unlink()
    out = kb.delete_documents(state, "manuals", ["broken.pdf", "again.md"])
    assert "Deleted 1 document" in out[5] and "Not deleted: no document" in out[5]
    assert "broken" in out[5] and "again.md" not in console.sources("manuals")

    out = kb.resync(state, "manuals", no_progress)
    assert "Synced" in out[5] and "0 added" in out[3] and console.sources("manuals") == []

    pending, _, _ = kb.ask_delete(state, "manuals")
    picker, table, doomed, status, chat, pending, box = kb.confirm_delete(state, pending, "manuals")
    assert "manuals" not in console.names() and "Deleted" in status
    assert pending is None and box["visible"] is False
    assert "manuals" not in chat["choices"]


def test_every_console_event_is_private_and_gated(console: Console) -> None:
    """Through the built page: every console event is private and takes the gate's state
    first, so none can be called from the API or without the check."""
    from app.server.ui import build_ui

    services, app = console.services, console.app
    blocks = build_ui(services, app.state.throttles, app.state.assistants)
    config = blocks.get_config_file()
    states = {c["id"] for c in config["components"] if c.get("type") == "state"}
    from app.server.console_assistants import AssistantsConsole

    pages = (KnowledgeHandlers, AssistantsConsole)
    console_fns = [
        f for f in blocks.fns.values() if isinstance(getattr(f.fn, "__self__", None), pages)
    ]
    assistant_fns = [f for f in console_fns if isinstance(f.fn.__self__, AssistantsConsole)]
    assert len(console_fns) >= 16 and len(assistant_fns) >= 8  # both pages are in the console
    for fn in console_fns:
        assert fn.api_visibility == "private", fn.name
        assert fn.inputs and fn.inputs[0]._id in states, fn.name


def test_table_cells_are_plain_text() -> None:
    from app.server.ui_knowledge_tables import MAX_CELL, cell, human_size, plain

    assert human_size(None) == "—" and human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KB" and human_size(5 * 2**30) == "5.0 GB"
    assert len(cell("x" * 5000)) == MAX_CELL and "\n" not in cell("a\nb\x00c")
    shown = plain("<img src=x onerror=alert(1)> [a](javascript:x) **b**")
    assert "<img" not in shown and "](" not in shown and "**" not in shown
    assert CONSOLE_LOCKED.startswith("Unlock")


def test_without_an_assistants_registry_the_page_says_so() -> None:
    from types import SimpleNamespace

    from app.server.ui_console import console_tab
    from app.settings import load_settings

    services: Any = SimpleNamespace(settings=load_settings())
    handlers = ConsoleHandlers(services, None, None)  # type: ignore[arg-type]
    with gr.Blocks() as blocks:
        gate = console_tab(handlers, gr.Dropdown())
    texts = [c.get("props", {}).get("value") for c in blocks.get_config_file()["components"]]
    assert "This app was built without an assistants registry." in texts
    assert isinstance(gate.state, gr.State)
