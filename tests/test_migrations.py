"""The conversations database on SQLite and a real PostgreSQL 15: Alembic migrations make exactly
the models' schema, replicas starting together all succeed, a pre-Alembic (create_all) database
is adopted without losing a conversation, and KBCHAT_DATABASE_URL's password is never shown."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from app.chat.types import ChatResult, Source
from tests.services import create_database, require, start_postgres

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]
STARTS = 4  # replicas starting at once
HEAD = "0008"  # the newest revision: a new one changes this line


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    require("postgres")
    with start_postgres() as server:
        yield server.url


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conv.sqlite3'}"
    return create_database(request.getfixturevalue("pg_server"), f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(autouse=True)
def _no_kbchat_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KBCHAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout


def _schema_diff(url: str) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.server.database import make_engine
    from app.server.db import Base

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def _versions(url: str) -> list[str]:
    from app.server.database import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def _result(answer: str, error: str | None = None) -> ChatResult:
    source = Source(1, "de/akku.md", "Akku", "de", 0.91, "Der Akku hält acht Jahre.")
    return ChatResult(answer, [source], "de", "generative", True, error=error)


def test_migrations_make_exactly_the_models_schema(empty_db: str) -> None:
    from app.server import schema
    from app.server.db import ConversationStore

    store = ConversationStore(empty_db)
    assert schema.current_revision(store.engine) == schema.head_revision() == HEAD
    assert _schema_diff(empty_db) == []
    ConversationStore(empty_db)  # a second start finds nothing to do
    assert _versions(empty_db) == [HEAD]


def test_the_assistants_revision_downgrades_and_upgrades_again(empty_db: str) -> None:
    from alembic import command

    from app.server import schema
    from app.server.database import make_engine
    from app.server.db import ConversationStore

    store = ConversationStore(empty_db)
    with store.engine.begin() as conn:
        command.downgrade(schema.alembic_config(conn), "0002")
    store.engine.dispose()
    engine = make_engine(empty_db)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert "assistants" not in tables and "leads" not in tables and "messages" in tables
    store = ConversationStore(empty_db)
    assert schema.current_revision(store.engine) == HEAD and _schema_diff(empty_db) == []


def test_answers_keep_whether_they_were_grounded_and_what_they_cite(empty_db: str) -> None:
    """Revision 0006: what the operator console's "unanswered" and source usage read."""
    from dataclasses import replace

    from app.server.db import ConversationStore

    store = ConversationStore(empty_db)
    session = store.open_session(None, "kb")
    cited = replace(_result("Acht Jahre [1]."), cited=[1])
    store.add_exchange(session, "Wie lange hält der Akku?", cited)
    nothing = ChatResult("Dazu finde ich nichts.", [], "de", "generative", False)
    store.add_exchange(session, "Wer hat gewonnen?", nothing)
    question, answer, _, unanswered = store.conversation(session)["messages"]
    assert (question["grounded"], question["cited"]) == (None, None)
    assert (answer["grounded"], answer["cited"]) == (True, [1])
    assert (unanswered["grounded"], unanswered["cited"]) == (False, [])


def test_the_session_assistant_revision_downgrades_and_upgrades_keeping_sessions(
    empty_db: str,
) -> None:
    from alembic import command

    from app.server import schema
    from app.server.database import make_engine
    from app.server.db import ConversationStore, UnknownSession

    store = ConversationStore(empty_db)
    session = store.open_session(None, "kb", "shop-a")
    store.add_exchange(session, "Wie lange hält der Akku?", _result("Acht Jahre [1]."))
    assert store.conversation(session)["assistant"] == "shop-a"
    with pytest.raises(UnknownSession):
        store.open_session(session, "kb", "shop-b")
    with store.engine.begin() as conn:
        command.downgrade(schema.alembic_config(conn), "0004")
    store.engine.dispose()
    engine = make_engine(empty_db)
    inspector = inspect(engine)
    columns = {c["name"] for c in inspector.get_columns("sessions")}
    indexes = {i["name"] for i in inspector.get_indexes("sessions")}
    engine.dispose()
    assert "assistant" not in columns and "ix_sessions_assistant" not in indexes
    store = ConversationStore(empty_db)  # upgraded again: the session kept, of no assistant now
    assert schema.current_revision(store.engine) == HEAD and _schema_diff(empty_db) == []
    kept = store.conversation(session)
    assert kept["assistant"] is None and len(kept["messages"]) == 2
    assert store.open_session(session, "kb") == session


def test_assistants_and_their_keys_round_trip(empty_db: str) -> None:
    from app.server.assistant_schema import AssistantCreate, AssistantPatch
    from app.server.assistants import AssistantConflict, Assistants
    from app.server.db import ConversationStore
    from app.settings import load_settings

    store = Assistants(ConversationStore(empty_db).engine, load_settings())
    made = store.create(AssistantCreate(id="shop", name="Pip", greeting={"de": "Grüß Gott!"}))
    with pytest.raises(AssistantConflict):
        store.create(AssistantCreate(id="shop"))
    key = store.add_key("shop", ["https://shop.test"])
    found = store.by_key(key.key)
    assert found is not None and found.assistant == "shop" and found.key_id == key.id
    assert found.settings.greeting == {"de": "Grüß Gott!"} and store.by_key(key.key + "x") is None
    store.refresh_origins()
    assert store.origins() == {"https://shop.test"}
    updated = store.update("shop", AssistantPatch(name="Pia"))
    assert (
        updated.name == "Pia" and updated.created == made.created and updated.keys[0].id == key.id
    )
    store.delete("shop")
    assert store.by_key(key.key) is None and store.all() == []


def test_replicas_starting_together_all_succeed(empty_db: str) -> None:
    """create_all raced here: one replica failed on Postgres. Now they queue on the lock."""
    from app.server.db import ConversationStore

    barrier, failures = threading.Barrier(STARTS), []
    stores: list[ConversationStore] = []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(ConversationStore(empty_db))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, daemon=True) for _ in range(STARTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60  # a start stuck behind another (a deadlock) fails here
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "a start is stuck"
    assert not failures, failures
    assert len(stores) == STARTS
    engine = create_engine(stores[0].engine.url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"sessions", "messages", "feedback", "alembic_version"} <= tables
    assert _versions(empty_db) == [HEAD]
    session_id = stores[1].open_session(None, "default")
    assert stores[2].conversation(session_id)["messages"] == []


def test_replica_processes_starting_together_all_succeed(empty_db: str) -> None:
    """The same as separate processes (the file lock and the advisory lock across processes)."""
    code = (
        "import sys, time\n"
        "from app.server.db import ConversationStore\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"  # start together
        "ConversationStore(sys.argv[1])\n"
    )
    start_at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_db, start_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(STARTS)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * STARTS, outputs
    assert _versions(empty_db) == [HEAD]


def test_stores_of_different_databases_start_together_in_one_process(tmp_path: Path) -> None:
    """Alembic keeps its migration context in module globals: one migration at a time per
    process, even for databases that share no lock (tests, several apps in one process)."""
    from app.server.db import ConversationStore

    barrier, failures = threading.Barrier(STARTS), []

    def start(n: int) -> None:
        barrier.wait()
        try:
            ConversationStore(f"sqlite:///{tmp_path / f'db{n}.sqlite3'}").engine.dispose()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in range(STARTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert all(
        _versions(f"sqlite:///{tmp_path / f'db{n}.sqlite3'}") == [HEAD] for n in range(STARTS)
    )


@pytest.mark.parametrize("made_by", ["0.1.0", "create_all"])
def test_a_database_made_before_migrations_is_adopted(empty_db: str, made_by: str) -> None:
    """create_all's tables without alembic_version: stamped at the revision they match, then
    upgraded; the conversations in it survive."""
    from app.server import schema
    from app.server.database import make_engine
    from app.server.db import Base, ConversationStore

    engine = make_engine(empty_db)
    legacy = [Base.metadata.tables[name] for name in ("sessions", "messages", "feedback")]
    Base.metadata.create_all(engine, tables=legacy)  # the tables there were before Alembic
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_sessions_assistant"))  # sessions had no assistant then
        conn.execute(text("ALTER TABLE sessions DROP COLUMN assistant"))
        for column in ("grounded", "cited"):  # nor answers their grounding and citations
            conn.execute(text(f"ALTER TABLE messages DROP COLUMN {column}"))
        if made_by == "0.1.0":  # before answers stored their error code
            conn.execute(text("ALTER TABLE messages DROP COLUMN error"))
        conn.execute(text("INSERT INTO sessions VALUES ('s1', 'default', '2026-01-01 00:00:00')"))
        conn.execute(
            text(
                "INSERT INTO messages (session_id, role, content, sources, language, mode,"
                " created) VALUES ('s1', 'assistant', 'alte Antwort', '[]', 'de',"
                " 'generative', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO feedback (message_id, rating, comment, created)"
                " SELECT id, 'up', 'gut', '2026-01-01 00:00:01' FROM messages"
            )
        )
    engine.dispose()

    store = ConversationStore(empty_db)
    assert schema.current_revision(store.engine) == HEAD
    assert _schema_diff(empty_db) == []
    store.add_exchange("s1", "Und jetzt?", _result("neu", error="llm_timeout"))
    messages = store.conversation("s1")["messages"]
    assert [m["content"] for m in messages] == ["alte Antwort", "Und jetzt?", "neu"]
    assert messages[0]["feedback"] == "up" and messages[0]["error"] is None
    assert messages[-1]["error"] == "llm_timeout"


def test_a_conversation_continues_on_another_replica(empty_db: str) -> None:
    from app.server.db import ConversationStore

    replica_a, replica_b = ConversationStore(empty_db), ConversationStore(empty_db)
    session_id = replica_a.open_session(None, "handbuch")
    answer_id = replica_a.add_exchange(session_id, "Wie lange hält der Akku? 🔋", _result("8 J."))
    assert replica_b.open_session(session_id, "handbuch") == session_id
    assert [t.content for t in replica_b.history(session_id)] == [
        "Wie lange hält der Akku? 🔋",
        "8 J.",
    ]
    replica_b.add_feedback(session_id, answer_id, "down", "zu kurz")
    conversation = replica_a.conversation(session_id)
    assert conversation["collection"] == "handbuch"
    assert conversation["messages"][-1]["sources"][0]["source"] == "de/akku.md"
    assert conversation["messages"][-1]["feedback"] == "down"
    with pytest.raises(LookupError):  # an answer of another session is not ours to rate
        replica_b.add_feedback(replica_b.open_session(None, "handbuch"), answer_id, "up")


# ------------------------------------------------------------------------ URLs and secrets


def test_postgres_urls_mean_psycopg_and_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.server import database

    for raw in ("postgresql://u:pw@db/kb", "postgres://u:pw@db/kb"):
        assert database.database_url(raw).drivername == "postgresql+psycopg"
    assert database.database_url("sqlite:///x.sqlite3").drivername == "sqlite"

    real = database.importlib.util.find_spec
    monkeypatch.setattr(
        database.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "psycopg" else real(name, *a),
    )
    with pytest.raises(database.DatabaseConfigError) as caught:
        database.database_url("postgresql://u:pw@db/kb")
    assert "pip install 'kbchat[postgres]'" in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://kb:s3cr3t-pw@db/kb",
        "kb:s3cr3t-pw@db",
        "postgresql+asyncpg://kb:s3cr3t-pw@db/kb",
        "http://kb:s3cr3t-pw@db/kb",
    ],
)
def test_a_bad_url_is_refused_without_echoing_it(raw: str) -> None:
    from app.server.database import DatabaseConfigError
    from app.server.db import ConversationStore

    with pytest.raises(DatabaseConfigError) as caught:
        ConversationStore(raw)
    assert "KBCHAT_DATABASE_URL" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_the_url_is_a_secret_in_settings() -> None:
    from app.settings import load_settings

    settings = load_settings(database_url="postgresql+psycopg://kb:s3cr3t-pw@db/kb")
    assert settings.db_url == "postgresql+psycopg://kb:s3cr3t-pw@db/kb"
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cr3t" not in shown
    assert load_settings(database_url="", data_dir="d").db_url.endswith("kbchat.sqlite3")


def test_a_wrong_password_is_one_line_without_the_password(
    pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    from app.cli import app
    from app.server.database import DatabaseUnavailableError
    from app.server.db import ConversationStore

    wrong = make_url(pg_server).set(password="s3cr3t-wrong").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailableError) as caught:
        ConversationStore(wrong)
    assert "password authentication failed" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)

    monkeypatch.setenv("KBCHAT_DATABASE_URL", wrong)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert "password authentication failed" in result.output
    assert "s3cr3t" not in result.output and "Traceback" not in result.output


def test_cli_migrates_ahead_and_reports_the_revision(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import app

    monkeypatch.setenv("KBCHAT_DATABASE_URL", empty_db)
    before = CliRunner().invoke(app, ["db", "current"])
    assert before.exit_code == 0, before.output
    assert f"database: none; newest: {HEAD}" in before.output
    upgraded = CliRunner().invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"revision {HEAD}" in upgraded.output
    after = CliRunner().invoke(app, ["db", "current"])
    assert f"database: {HEAD}; newest: {HEAD} (up to date)" in after.output
    assert _versions(empty_db) == [HEAD]


def test_each_revision_logs_as_one_line() -> None:
    """Alembic logs "Running upgrade 0001 -> 0002, <doc>" at every start: a doc (the docstring's
    first paragraph) spanning lines broke the one-record-per-line text log."""
    from alembic.script import ScriptDirectory

    from app.server.schema import alembic_config

    scripts = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    assert len(scripts) >= 2
    for script in scripts:
        assert script.doc and "\n" not in script.doc, (script.revision, script.doc)
