"""The console's Conversations page handlers as the page calls them, over a real SQLite store and
ConversationAdmin, with the shell's real Gate: a locked page refused and changing nothing, forged
filters, rows, session ids and cursors refused with a message, keyset pages covering everything
once, transcripts with sources and feedback rendered as escaped text, the export's files (private
folder, the filters applied, formula cells neutralised) and erasure only after confirmation."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from pydantic import SecretStr

from app.chat.types import ChatResult, Source
from app.server import console_conversations
from app.server.console_conversations import ConversationsConsole
from app.server.conversation_admin import ConversationAdmin
from app.server.conversation_query import ConversationFilter
from app.server.db import ConversationStore
from app.server.ui_console import Gate, key_digest
from app.settings import load_settings
from tests.conversation_seed import add_handoff, add_lead, backdate, conversation

ADMIN = "conversations-console-admin"
HOSTILE = '<img src=x onerror="window.__xss=1"> **bold** [a](javascript:alert(1))'
EMPTY = ("", "", "", "", "", "", False, False, False, "")


def filters(**given: Any) -> tuple[Any, ...]:
    names = ["assistant", "collection", "language", "since", "until", "rating"]
    names += ["unanswered", "handed_over", "lead", "q"]
    values = dict(zip(names, EMPTY, strict=True))
    values.update(given)
    return tuple(values[n] for n in names)


class Page:
    def __init__(self, tmp: Path) -> None:
        url = f"sqlite:///{tmp / 'c.sqlite3'}"
        settings = load_settings(data_dir=tmp / "data", database_url=url, admin_api_key=ADMIN)
        self.store = ConversationStore(url)
        self.admin = ConversationAdmin(self.store.engine, settings)
        self.gate = Gate(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
        self.page = ConversationsConsole(
            self.admin, self.gate, lambda: ["shop"], lambda: ["default", "shop"]
        )
        self.state = key_digest(ADMIN)

    def listed(self, *values: Any) -> dict[str, Any]:
        out = self.page.search(self.state, *(values or EMPTY))
        names = ["rows", "ids", "cursor", "shown", "picker", "next", "assistants", "kbs"]
        return dict(zip([*names, "status"], out, strict=True))

    def _all(self) -> set[str]:
        return {
            c.session_id
            for batch in self.admin.export(ConversationFilter())
            for c in batch.conversations
        }


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Page, dict[str, str]]:
    p = Page(tmp_path)
    ids: dict[str, str] = {}
    ids["en"], en_answer = conversation(p.store, "How do I return shoes?", assistant="shop")
    p.store.add_feedback(ids["en"], en_answer, "up", '=HYPERLINK("http://evil")')
    ids["de"], de_answer = conversation(
        p.store, "Wie lange dauert die Lieferung?", "de", assistant="shop", found=False
    )
    p.store.add_feedback(ids["de"], de_answer, "down", "Keine Antwort")
    add_handoff(p.store, ids["de"])
    add_lead(p.store, ids["de"], "Kunde@Example.com")
    hostile = Source(1, HOSTILE, HOSTILE, "en", 0.5, "p", url="javascript:alert(1)")
    session = p.store.open_session(None, "shop")
    answer = ChatResult(HOSTILE, [hostile], "en", "generative", True, cited=[1])
    p.store.add_exchange(session, HOSTILE, answer)
    ids["hostile"] = session
    return p, ids


def every_event(p: Page, ids: dict[str, str], state: Any) -> list[Any]:
    """Each event of the page with `state` and otherwise sensible arguments."""
    shown, select = list(ids.values()), gr.SelectData(None, {"index": [0, 0], "value": ""})
    page = p.page
    return [
        lambda: page.search(state, *EMPTY),
        lambda: page.next_page(state, None, None),
        lambda: page.reload(state, None),
        lambda: page.reload_quietly(state, None),
        lambda: page.open_row(state, shown, select),
        lambda: page.open_session(state, shown, ids["en"]),
        lambda: page.export_csv(state, *EMPTY),
        lambda: page.export_json(state, *EMPTY),
        lambda: page.ask_erase(state, ids["en"]),
        lambda: page.confirm_erase(state, ids["en"], ids["en"]),
        lambda: page.ask_erase_email(state, "kunde@example.com"),
        lambda: page.confirm_erase_email(state, "kunde@example.com"),
        lambda: page.cancel(state),
    ]


def test_a_locked_page_is_refused_and_changes_nothing(seeded: tuple[Page, dict]) -> None:
    p, ids = seeded
    before = p._all()
    for state in (None, "", "unlocked", True, key_digest("not-the-key"), {"digest": 1}):
        calls = every_event(p, ids, state)
        for call in calls:
            with pytest.raises(gr.Error, match="Unlock the console"):
                call()
        # the shell's lock clears the page silently
        cleared = p.page.gate_changed(state)
        assert cleared[1] == [] and cleared[2] is None and cleared[-1] == ""
    assert p._all() == before
    # a rotated key locks a page unlocked with the old one
    p.gate.services.settings.admin_api_key = SecretStr("rotated")
    with pytest.raises(gr.Error):
        p.page.search(p.state, *EMPTY)


def test_unlocking_lists_the_newest_and_filters_narrow_it(seeded: tuple[Page, dict]) -> None:
    p, ids = seeded
    first = p.page.gate_changed(p.state)
    assert set(first[1]) == set(ids.values()) and first[-1] == "3 conversations."
    assert all(isinstance(cell, str) for row in first[0] for cell in row)
    assert p.listed(*filters(language="de"))["ids"] == [ids["de"]]
    assert p.listed(*filters(language="DE "))["ids"] == [ids["de"]]
    assert p.listed(*filters(rating="up"))["ids"] == [ids["en"]]
    assert p.listed(*filters(unanswered=True))["ids"] == [ids["de"]]
    assert p.listed(*filters(handed_over=True, lead=True))["ids"] == [ids["de"]]
    assert set(p.listed(*filters(assistant="shop"))["ids"]) == {ids["en"], ids["de"]}
    assert p.listed(*filters(collection="shop"))["ids"] == [ids["hostile"]]
    assert p.listed(*filters(q="onerror"))["ids"] == [ids["hostile"]]
    backdate(p.store, ids["en"], datetime(2025, 1, 10, 12))
    assert p.listed(*filters(until="2025-01-10"))["ids"] == [ids["en"]]
    assert ids["en"] not in p.listed(*filters(since="2025-01-11"))["ids"]
    # a row's cells are the summary as plain strings, hostile text untouched (shown as text)
    row = p.listed(*filters(collection="shop"))["rows"][0]
    assert HOSTILE[:50] in row[4] and row[2] == "shop"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"assistant": "other-assistant"}, "no such assistant"),
        ({"collection": "../secrets"}, "no such knowledge base"),
        ({"language": "<script>"}, "Language"),
        ({"language": "en" * 40}, "at most 35"),
        ({"since": "yesterday"}, "a date such as"),
        ({"until": "2026-13-45"}, "a date such as"),
        ({"rating": "up' OR 1=1"}, "Rating"),
        ({"unanswered": "yes"}, "tick or untick"),
        ({"lead": 1}, "tick or untick"),
        ({"q": "x" * 201}, "at most 200"),
        ({"q": "a\x00b"}, "one line"),
        ({"q": ["list"]}, "not text"),
        ({"assistant": {"$ne": 1}}, "not text"),
    ],
)
def test_forged_filters_are_refused_with_a_message(
    seeded: tuple[Page, dict], given: dict[str, Any], message: str
) -> None:
    p, _ = seeded
    out = p.listed(*filters(**given))
    assert message in out["status"]
    assert out["rows"] == gr.skip()  # the list shown stays as it was
    file, status = p.page.export_csv(p.state, *filters(**given))
    assert message in status and file["value"] is None
    assert "incomplete" in p.page.search(p.state, "", "")[-1]


def test_pages_cover_every_conversation_once(
    seeded: tuple[Page, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = seeded
    for n in range(4):
        conversation(p.store, f"Question {n}?")
    monkeypatch.setattr(console_conversations, "PAGE_SIZE", 2)
    out = p.page.search(p.state, *EMPTY)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += out[1]
        assert out[5]["interactive"] is (out[2] is not None)
        if out[2] is None:
            break
        assert "more on the next page" in out[-1]
        out = p.page.next_page(p.state, out[3], out[2])
    assert pages == 4 and len(seen) == 7 and set(seen) == p._all()
    # the browser cannot hand in a cursor or filters: only server-side state is accepted
    assert p.page.next_page(p.state, EMPTY, "eyJhIjoxfQ")[-1] == "That was the last page."


def test_a_transcript_shows_sources_feedback_lead_and_handoff_as_text(
    seeded: tuple[Page, dict],
) -> None:
    p, ids = seeded
    listed = p.listed()
    row = listed["ids"].index(ids["de"])
    current, html, erase_row, status = p.page.open_row(
        p.state, listed["ids"], gr.SelectData(None, {"index": [row, 3], "value": ""})
    )
    assert current == ids["de"] and erase_row["visible"] is True and status == ""
    for text in ("visitor", "Wie lange dauert die Lieferung?", "found nothing", "Keine Antwort"):
        assert text in html
    assert "Lead:" in html and "Kunde@Example.com" in html and "Handoff:</b> waiting" in html

    current, html, _, _ = p.page.open_session(p.state, listed["ids"], ids["en"])
    assert "returns.md" in html and "score 0.83" in html and "cited" in html
    assert "https://shop.test/returns" in html and "rated up" in html

    _, html, _, _ = p.page.open_session(p.state, listed["ids"], ids["hostile"])
    assert "<img" not in html and "&lt;img src=x onerror=" in html
    assert "href" not in html and "<a" not in html and "<strong>" not in html
    assert "javascript:alert(1)" in html  # the URL as text, never a link


def test_forged_rows_and_session_ids_are_refused(seeded: tuple[Page, dict]) -> None:
    p, ids = seeded
    listed = p.listed(*filters(language="de"))["ids"]
    listed = [*listed, ids["en"]]  # two rows, so that True (== 1) would name a row
    for index in ([5, 0], [-1, 0], ["0", 0], None, [True, 0], [1.0, 0]):
        out = p.page.open_row(p.state, listed, gr.SelectData(None, {"index": index, "value": ""}))
        assert out[0] is None and out[-1] == console_conversations.PICK_ROW
    # a real conversation that the list shown does not hold, a made-up id, a path
    listed = listed[:1]
    for picked in (ids["en"], "nope", "../../etc/passwd", None, ["x"]):
        out = p.page.open_session(p.state, listed, picked)
        assert out[0] is None and out[1] == "" and out[-1] == console_conversations.PICK_ROW
    # a row of a conversation erased since the list was shown
    p.admin.erase(ids["de"])
    assert p.page.open_session(p.state, listed, ids["de"])[-1] == console_conversations.GONE


def read_export(file: dict[str, Any]) -> tuple[Path, str]:
    path = Path(file["value"])
    return path, path.read_text(encoding="utf-8")


def test_export_writes_the_filtered_conversations_into_a_private_folder(
    seeded: tuple[Page, dict],
) -> None:
    p, ids = seeded
    file, status = p.page.export_csv(p.state, *filters(assistant="shop"))
    path, text = read_export(file)
    assert file["visible"] is True and status == f"Exported as {path.name}."
    assert path.name.startswith("kbchat-conversations-") and path.suffix == ".csv"
    assert path.is_relative_to(tempfile.gettempdir()) and not path.is_relative_to(Path.cwd())
    assert (path.parent.parent.stat().st_mode & 0o077) == 0  # only the server's user reads it
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["session_id"] for r in rows} == {ids["en"], ids["de"]}
    assert next(r["content"] for r in rows if r["session_id"] == ids["de"]).startswith("Wie")

    file, _ = p.page.export_json(p.state, *filters(language="en"))
    path, text = read_export(file)
    records = [json.loads(line) for line in text.splitlines()]
    assert path.suffix == ".jsonl" and {r["session_id"] for r in records} == {
        ids["en"],
        ids["hostile"],
    }
    en = next(r for r in records if r["session_id"] == ids["en"])
    assert en["messages"][1]["feedback"][0]["comment"].startswith("=HYPERLINK")
    assert en["messages"][1]["sources"][0]["source"] == "returns.md"

    # a formula in a visitor's message is neutralised in the CSV
    conversation(p.store, "=cmd|' /C calc'!A0")
    _, text = read_export(p.page.export_csv(p.state, *filters(q="calc"))[0])
    cells = [r["content"] for r in csv.DictReader(io.StringIO(text))]
    assert "'=cmd|' /C calc'!A0" in cells and "=cmd|' /C calc'!A0" not in cells


def test_old_exports_are_removed(
    seeded: tuple[Page, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = seeded
    first, _ = read_export(p.page.export_csv(p.state, *EMPTY)[0])
    monkeypatch.setattr(console_conversations, "EXPORT_TTL_S", -1)
    second, _ = read_export(p.page.export_csv(p.state, *EMPTY)[0])
    assert not first.exists() and second.exists()


def test_erasing_a_conversation_needs_confirmation(seeded: tuple[Page, dict]) -> None:
    p, ids = seeded
    current = p.page.open_session(p.state, p.listed()["ids"], ids["en"])[0]
    pending, row, status = p.page.ask_erase(p.state, current)
    assert pending == ids["en"] and row["visible"] is True and "for good" in status
    assert ids["en"] in p._all()  # asking erases nothing
    assert p.page.cancel(p.state)[0] is None
    # a confirmation for another conversation than the one open, or for none, erases nothing
    out = p.page.confirm_erase(p.state, ids["de"], ids["en"])
    assert out[-1] == "Nothing to erase." and p._all() == set(ids.values())
    assert p.page.confirm_erase(p.state, None, None)[-1] == "Nothing to erase."
    assert p.page.ask_erase(p.state, None)[-1] == console_conversations.NOTHING_OPEN
    out = p.page.confirm_erase(p.state, pending, current)
    assert (
        out[0] is None and out[2] is None and out[3] == "" and out[-1] == "Erased 1 conversation."
    )
    assert ids["en"] not in p._all() and p.admin.transcript(ids["en"]) is None
    assert ids["en"] not in p.page.reload(p.state, None)[1]


def test_erasing_by_email_needs_confirmation_and_reports_the_count(
    seeded: tuple[Page, dict],
) -> None:
    p, ids = seeded
    second, _ = conversation(p.store, "Another question", "de")
    add_lead(p.store, second, "kunde@example.com")
    for bad in ("", "not-an-email", "a@b", "x" * 300 + "@example.com", None, ["a@example.com"]):
        pending, row, status = p.page.ask_erase_email(p.state, bad)
        assert pending is None and row["visible"] is False and "email" in status
    pending, row, status = p.page.ask_erase_email(p.state, "  KUNDE@example.com ")
    assert row["visible"] is True and "kunde@example.com" in status.lower()
    assert len(p._all()) == 4  # asking erases nothing
    assert p.page.confirm_erase_email(p.state, "<script>")[-1] == "Nothing to erase."
    out = p.page.confirm_erase_email(p.state, pending)
    assert out[2] == "" and out[-1].startswith("Erased 2 conversations of")
    assert p._all() == {ids["en"], ids["hostile"]}
    again = p.page.confirm_erase_email(p.state, pending)[-1]
    assert again.startswith("Erased 0 conversations")


def test_every_event_of_the_built_page_is_private_and_gated(tmp_path: Path) -> None:
    """Through the shell: the page is built when the app has the service, and every one of its
    events is private and takes the gate's state first."""
    from app.server.ui_console import ConsoleHandlers, ConsoleParts, console_tab

    p = Page(tmp_path)
    services: Any = SimpleNamespace(settings=p.gate.services.settings, collections=lambda: [])
    parts = ConsoleParts(conversations=p.admin)
    with gr.Blocks() as blocks:
        console_tab(ConsoleHandlers(services, None, None, parts), gr.Dropdown())  # type: ignore[arg-type]
    config = blocks.get_config_file()
    states = {c["id"] for c in config["components"] if c.get("type") == "state"}
    fns = [
        f
        for f in blocks.fns.values()
        if isinstance(getattr(f.fn, "__self__", None), ConversationsConsole)
    ]
    assert len(fns) >= 14
    for fn in fns:
        assert fn.api_visibility == "private", fn.name
        assert fn.inputs and fn.inputs[0]._id in states, fn.name
