"""The console's Assistants page handlers (app.server.console_assistants), called as Gradio
would call them, with hostile values: a locked page refuses every event, forged ids and key ids
are refused, invalid colours, URLs, languages, models and knowledge bases get a readable message
and change nothing, a widget key is shown once and only its hash is stored. Real SQLite; the
console shell's gate is a stand-in with the same contract (gate.check raises gr.Error)."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from app.server.console_assistant_form import FIELDS, plain
from app.server.console_assistants import LOAD_SIZE, AssistantsConsole

ADMIN = "console-admin-key"
FORM = 3  # the FIELDS start at this index in the LOAD outputs
STATUS = LOAD_SIZE - 1


class StandInGate:
    """The shell's gate contract: the state holds the SHA-256 of the key that unlocked it,
    compared in constant time with the configured key's on every call."""

    state: Any = None

    def __init__(self, key: str) -> None:
        self.key = key

    def unlocked(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()

    def check(self, state: Any) -> None:
        if not isinstance(state, str) or not hmac.compare_digest(state, self.unlocked()):
            raise gr.Error("Unlock the console first.")


@pytest.fixture
def page(tmp_path: Path) -> tuple[AssistantsConsole, str, Path]:
    """(handlers, the unlocked state, the database file)."""
    from app.server.assistants import Assistants
    from app.server.db import ConversationStore
    from app.settings import load_settings

    database = tmp_path / "conv.sqlite3"
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{database}",
        admin_api_key=ADMIN,
        llm={"model": "stub-model", "allowed_models": ["stub-large"]},
    )
    store = ConversationStore(settings.db_url)
    handlers = AssistantsConsole(
        Assistants(store.engine, settings), settings, lambda: ["default", "shop"]
    )
    gate = StandInGate(ADMIN)
    handlers.gate = gate
    return handlers, gate.unlocked(), database


def value(update: Any) -> Any:
    return update.get("value") if isinstance(update, dict) else update


def form_of(loaded: tuple[Any, ...]) -> dict[str, Any]:
    """The form's values as the browser would send them back after a load."""
    values = {f: value(v) for f, v in zip(FIELDS, loaded[FORM : FORM + len(FIELDS)], strict=True)}
    boxes = loaded[FORM + len(FIELDS) + 3 : FORM + len(FIELDS) + 6]
    values.update(greeting=boxes[0], suggestions=boxes[1], consent=boxes[2])
    return values


def save(
    handlers: AssistantsConsole, state: Any, current: Any, loaded: tuple[Any, ...], **changes: Any
) -> tuple[Any, ...]:
    """Save the form of `loaded` with `changes` (FIELDS or greeting/suggestions/consent)."""
    values = {**form_of(loaded), **changes}
    texts, shown = loaded[FORM + len(FIELDS)], loaded[FORM + len(FIELDS) + 1]
    form = [values[f] for f in FIELDS]
    boxes = [values["greeting"], values["suggestions"], values["consent"]]
    return handlers.save(state, current, texts, shown, *form, *boxes)


def created(handlers: AssistantsConsole, state: str, assistant: str = "shop") -> tuple[Any, ...]:
    loaded = handlers.create(state, assistant, "Pip")
    assert loaded[0] == assistant, loaded[STATUS]
    return loaded


def stored(handlers: AssistantsConsole, assistant: str = "shop") -> dict[str, Any]:
    return handlers.assistants.get(assistant).model_dump()


# ------------------------------------------------------------------------------------ the gate


@pytest.mark.parametrize("state", [None, "", "unlocked", True, hashlib.sha256(b"old").hexdigest()])
def test_a_locked_page_refuses_every_event_and_changes_nothing(
    page: tuple[AssistantsConsole, str, Path], state: Any
) -> None:
    handlers, unlocked, _ = page
    loaded = created(handlers, unlocked)
    key = handlers.create_key(unlocked, "shop", "")[0]
    key_id = value(key)[0][0]
    before = stored(handlers)
    calls = [
        lambda: handlers.refresh(state, "shop"),
        lambda: handlers.select(state, "shop"),
        lambda: handlers.create(state, "other", "Other"),
        lambda: save(handlers, state, "shop", loaded, color="#000000"),
        lambda: handlers.ask_delete(state, "shop"),
        lambda: handlers.confirm_delete(state, "shop", "shop"),
        lambda: handlers.cancel_delete(state),
        lambda: handlers.switch_language(state, {}, "en", "", "", "", "de"),
        lambda: handlers.reload_preview(state, "shop"),
        lambda: handlers.create_key(state, "shop", ""),
        lambda: handlers.revoke_key(state, "shop", key_id),
    ]
    for call in calls:
        with pytest.raises(gr.Error):
            call()
    assert stored(handlers) == before
    assert [a.id for a in handlers.assistants.all()] == ["shop"]
    # the shell's lock changing to locked clears the page instead of raising
    cleared = handlers.gate_changed(state, "shop")
    assert cleared[0] is None and cleared[2]["visible"] is False
    assert cleared[1]["choices"] == [] and cleared[1]["value"] is None  # no list for a locked page
    assert "shop" not in repr(cleared)


def test_handlers_refuse_everything_until_a_gate_is_bound(
    page: tuple[AssistantsConsole, str, Path],
) -> None:
    handlers, unlocked, _ = page
    unbound = AssistantsConsole(handlers.assistants, handlers.settings)
    with pytest.raises(gr.Error):
        unbound.create(unlocked, "shop", "Pip")
    assert handlers.assistants.all() == []


# ------------------------------------------------------------------------------- editing


def test_create_edit_every_setting_and_load_it_back(
    page: tuple[AssistantsConsole, str, Path],
) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    assert "Created shop" in loaded[STATUS]
    # a second language: the English boxes are kept while German is shown
    switched = handlers.switch_language(
        state, loaded[FORM + len(FIELDS)], "en", "Hello!", "Returns?\n\nShipping?", "I agree", "de"
    )
    texts, shown = switched[0], switched[1]
    assert shown == "de" and switched[3:6] == ("", "", "")
    changes = {
        "name": "Pip the helper",
        "avatar": "https://cdn.shop.test/pip.png",
        "color": "#FF0000",
        "position": "left",
        "theme": "dark",
        "default_language": "en",
        "instructions": "Be brief.",
        "model": "stub-large",
        "collection": "shop",
        "session_messages": 20,
        "daily_messages": 500.0,
        "lead_mode": "after",
        "lead_after": 2,
        "webhook_url": "https://93.184.215.14/leads",
        "fullpage": True,
        "greeting": "Hallo!",
        "suggestions": "Rückgabe?",
        "consent": "Ich stimme zu",
    }
    values = {**form_of(loaded), **changes}
    out = handlers.save(
        state,
        "shop",
        texts,
        shown,
        *[values[f] for f in FIELDS],
        values["greeting"],
        values["suggestions"],
        values["consent"],
    )
    assert "Saved shop" in out[STATUS], out[STATUS]
    got = stored(handlers)
    assert got["name"] == "Pip the helper" and got["avatar"] == "https://cdn.shop.test/pip.png"
    assert got["color"] == "#ff0000" and got["position"] == "left" and got["theme"] == "dark"
    assert got["greeting"] == {"en": "Hello!", "de": "Hallo!"}
    assert got["suggestions"] == {"en": ["Returns?", "Shipping?"], "de": ["Rückgabe?"]}
    assert got["instructions"] == "Be brief." and got["model"] == "stub-large"
    assert got["collection"] == "shop" and got["fullpage"] is True
    assert got["caps"] == {"session_messages": 20, "daily_messages": 500}
    assert got["leads"] == {
        "mode": "after",
        "after_messages": 2,
        "consent": {"en": "I agree", "de": "Ich stimme zu"},
        "webhook_url": "https://93.184.215.14/leads",
    }
    # loading it again shows what was saved, the language last shown first
    again = handlers.select(state, "shop")
    assert form_of(again)["color"] == "#ff0000" and form_of(again)["greeting"] == "Hello!"
    assert value(again[FORM + FIELDS.index("model")]) == "stub-large"


HOSTILE = [
    ({"color": "red"}, "Colour"),
    ({"color": "#12345g"}, "Colour"),
    ({"color": "#ff000080"}, "Colour"),
    ({"avatar": "javascript:alert(1)"}, "Avatar URL"),
    ({"avatar": "http://cdn.shop.test/pip.png"}, "Avatar URL"),
    ({"avatar": 'https://x.test/a.png" onerror="alert(1)'}, "Avatar URL"),
    ({"default_language": "english!"}, "Default language"),
    ({"model": "gpt-evil"}, "Model"),
    ({"model": ["stub-large"]}, "Model"),
    ({"collection": "../../etc"}, "Knowledge base"),
    ({"collection": "elsewhere"}, "Knowledge base"),
    ({"webhook_url": "ftp://hooks.shop.test/"}, "webhook URL"),
    ({"webhook_url": "https://127.0.0.1/hook"}, "private"),
    ({"session_messages": -1}, "messages per conversation"),
    ({"session_messages": 1.5}, "messages per conversation"),
    ({"daily_messages": float("inf")}, "messages per day"),
    ({"lead_mode": "before"}, "consent"),
    ({"lead_mode": "sometimes"}, "Lead capture"),
    ({"name": "Pip\u202e"}, "Name"),
    ({"name": 5}, "Name"),
    ({"position": "top"}, "Position"),
    ({"theme": "<script>"}, "Theme"),
    ({"fullpage": "yes"}, "Full page"),
    ({"greeting": "x" * 601}, "Greeting"),
    ({"suggestions": "\n".join(f"q{i}" for i in range(7))}, "Suggested questions"),
]


@pytest.mark.parametrize(("changes", "named"), HOSTILE, ids=[str(h[0])[:40] for h in HOSTILE])
def test_invalid_values_get_a_readable_message_and_nothing_is_saved(
    page: tuple[AssistantsConsole, str, Path], changes: dict[str, Any], named: str
) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    before = stored(handlers)
    out = save(handlers, state, "shop", loaded, **changes)
    message = out[STATUS]
    assert named in message, message
    assert "Traceback" not in message and "pydantic" not in message and "<" not in message
    assert all(v == gr.skip() for v in out[:STATUS])  # the form keeps what was typed
    assert stored(handlers) == before


def test_an_invalid_language_is_refused(page: tuple[AssistantsConsole, str, Path]) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    texts = loaded[FORM + len(FIELDS)]
    for bad in ("english!", "../x", "e", "", None, ["en"]):
        out = handlers.switch_language(state, texts, "en", "Hi", "", "", bad)
        assert "language is a code" in out[-1], bad
    # a forged texts state or shown language cannot smuggle a key into the settings
    out = save(handlers, state, "shop", loaded, greeting="Hi")
    forged = handlers.save(
        state, "shop", {"<x>": {"greeting": "a"}}, "en", *list(form_of(loaded).values())
    )
    assert "language is a code" in forged[STATUS]
    assert stored(handlers)["greeting"] == {"en": "Hi"}
    del out


@pytest.mark.parametrize("forged", ["ghost", "../shop", "SHOP", "shop\x00", 7, None, ["shop"]])
def test_forged_assistant_ids_are_refused(
    page: tuple[AssistantsConsole, str, Path], forged: Any
) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    before = stored(handlers)
    if forged is not None:
        assert "No such assistant" in handlers.select(state, forged)[STATUS]
    refused = ("Pick an assistant first.", "No such assistant.")
    assert save(handlers, state, forged, loaded, name="X")[STATUS] in refused
    assert handlers.ask_delete(state, forged)[0] is None
    assert handlers.confirm_delete(state, forged, forged)[STATUS] != ""
    assert handlers.create_key(state, forged, "")[-1] in [plain(r) for r in refused]
    assert stored(handlers) == before and [a.id for a in handlers.assistants.all()] == ["shop"]


def test_delete_needs_the_confirmation_of_the_same_assistant(
    page: tuple[AssistantsConsole, str, Path],
) -> None:
    handlers, state, _ = page
    created(handlers, state, "shop")
    created(handlers, state, "other")
    pending, row, message = handlers.ask_delete(state, "shop")
    assert pending == "shop" and row["visible"] is True and "shop" in message
    assert handlers.cancel_delete(state)[0] is None
    # a confirmation for another assistant than the one shown deletes nothing
    out = handlers.confirm_delete(state, "other", "shop")
    assert "Nothing to delete" in out[STATUS]
    assert {a.id for a in handlers.assistants.all()} == {"shop", "other"}
    out = handlers.confirm_delete(state, "shop", "shop")
    assert "Deleted shop" in out[STATUS] and out[0] is None
    assert [a.id for a in handlers.assistants.all()] == ["other"]


# ------------------------------------------------------------------------------------ keys


def test_a_key_is_shown_once_and_stored_hashed(page: tuple[AssistantsConsole, str, Path]) -> None:
    handlers, state, database = page
    created(handlers, state)
    table, _, shown, origins_box, message = handlers.create_key(
        state, "shop", "https://shop.test\nhttps://www.shop.test/\n"
    )
    key = shown["value"]
    assert key.startswith("kb_") and shown["visible"] is True and origins_box == ""
    assert "not shown again" in message
    rows = value(table)
    assert len(rows) == 1 and rows[0][1] == "https://shop.test https://www.shop.test"
    with sqlite3.connect(database) as db:
        (stored_hash,) = db.execute("SELECT key_hash FROM assistant_keys").fetchone()
        dump = "\n".join(db.iterdump())
    assert stored_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in dump
    assert handlers.assistants.by_key(key) is not None
    # any later load hides it
    again = handlers.select(state, "shop")
    assert again[LOAD_SIZE - 3] == {"__type__": "update", "value": "", "visible": False}
    assert key not in repr(again)
    # revoke: the key stops working
    key_id = rows[0][0]
    _, _, message = handlers.revoke_key(state, "shop", key_id)
    assert f"Revoked key {key_id}" in message and handlers.assistants.by_key(key) is None


@pytest.mark.parametrize(
    "origins", ["javascript:alert(1)", "https://shop.test/path", "shop.test", "https://a b.test"]
)
def test_invalid_origins_make_no_key(
    page: tuple[AssistantsConsole, str, Path], origins: str
) -> None:
    handlers, state, _ = page
    created(handlers, state)
    out = handlers.create_key(state, "shop", origins)
    assert "Origins" in out[-1] and "<" not in out[-1]
    assert stored(handlers)["keys"] == []


def test_another_assistants_key_cannot_be_revoked(
    page: tuple[AssistantsConsole, str, Path],
) -> None:
    handlers, state, _ = page
    created(handlers, state, "shop")
    created(handlers, state, "other")
    theirs = value(handlers.create_key(state, "other", "")[0])[0][0]
    for forged in (theirs, "key_000000000000", "../key", None, 5):
        out = handlers.revoke_key(state, "shop", forged)
        assert "key" in out[-1].lower() and "Revoked" not in out[-1]
    assert len(stored(handlers, "other")["keys"]) == 1


# --------------------------------------------------------------------------------- preview


def test_the_preview_is_a_same_origin_frame_with_a_token_for_this_assistant(
    page: tuple[AssistantsConsole, str, Path],
) -> None:
    from app.server import preview_token

    handlers, state, _ = page
    loaded = created(handlers, state)
    frame = loaded[LOAD_SIZE - 2]
    assert frame.startswith('<iframe id="kbchat-console-preview-frame" src="a/shop?preview=')
    token = frame.split("preview=")[1].split("&amp;")[0]
    assert preview_token.verify(ADMIN, "shop", token)
    assert not preview_token.verify(ADMIN, "other", token)
    assert handlers.reload_preview(state, "shop") != frame  # a new address: the frame reloads
