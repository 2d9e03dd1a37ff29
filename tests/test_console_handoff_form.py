"""The handoff settings in the console's Assistants page: saved through the same form and the
same AssistantSettings model as the admin API, shown back as they were saved, and hostile or
malformed values refused with a readable message and nothing saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.server.console_assistants import AssistantsConsole
from tests.test_console_assistants import STATUS, created, page, save, stored  # noqa: F401

GOOD = {
    "handoff_enabled": True,
    "handoff_offer_after": 3,
    "handoff_timezone": "Europe/Madrid",
    "handoff_schedule": "mon 09:00-13:00 14:00-18:00\nfri: 09:00-15:00",
    "handoff_offline": "es: Volvemos el lunes.\nen: Back on Monday.",
    "handoff_email": "team@shop.example",
}


def test_handoff_settings_are_saved_and_shown_back(
    page: tuple[AssistantsConsole, str, Path],  # noqa: F811
) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    saved = save(handlers, state, "shop", loaded, **GOOD)
    assert stored(handlers)["handoff"] == {
        "enabled": True,
        "offer_after_unanswered": 3,
        "hours": {
            "timezone": "Europe/Madrid",
            "schedule": {"mon": ["09:00-13:00", "14:00-18:00"], "fri": ["09:00-15:00"]},
        },
        "offline_message": {"es": "Volvemos el lunes.", "en": "Back on Monday."},
        "notify_email": "team@shop.example",
    }
    again = save(handlers, state, "shop", saved)  # saving the shown form changes nothing
    assert stored(handlers)["handoff"]["hours"]["schedule"]["fri"] == ["09:00-15:00"]
    assert save(handlers, state, "shop", again, handoff_schedule="", handoff_offline="")
    assert stored(handlers)["handoff"]["hours"]["schedule"] == {}
    assert stored(handlers)["handoff"]["offline_message"] == {}


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("handoff_timezone", "../../etc/passwd", "time zone"),
        ("handoff_timezone", "Mars/Olympus", "time zone"),
        ("handoff_schedule", "someday 09:00-10:00", "schedule"),
        ("handoff_schedule", "mon 09:00-08:00", "schedule"),
        ("handoff_schedule", "mon 09:00-12:00 11:00-13:00", "schedule"),
        ("handoff_schedule", "mon 09:00-10:00\nmon 11:00-12:00", "twice"),
        ("handoff_schedule", "mon " + "09:00-10:00 " * 200, "schedule"),
        ("handoff_offline", "no language here", "offline message"),
        ("handoff_offline", "<script>: hi", "offline message"),
        ("handoff_offline", "es: \u202eevil", "offline message"),
        ("handoff_offline", "es: " + "x" * 700, "offline message"),
        ("handoff_email", "not-an-email", "notify email"),
        ("handoff_email", "a@b.example\r\nBcc: x@y.example", "notify email"),
        ("handoff_offer_after", 21, "offer after"),
        ("handoff_offer_after", 1.5, "offer after"),
        ("handoff_enabled", "yes", "on"),
        ("handoff_schedule", ["mon 09:00-10:00"], "schedule"),
    ],
)
def test_hostile_handoff_values_are_refused_and_nothing_saved(
    page: tuple[AssistantsConsole, str, Path],  # noqa: F811
    field: str,
    bad: Any,
    message: str,
) -> None:
    handlers, state, _ = page
    loaded = created(handlers, state)
    before = stored(handlers)
    out = save(handlers, state, "shop", loaded, **{**GOOD, field: bad})
    assert "Handoff" in out[STATUS] and message in out[STATUS], out[STATUS]
    assert "Traceback" not in out[STATUS]
    assert stored(handlers) == before
