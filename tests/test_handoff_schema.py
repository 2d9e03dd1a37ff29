"""Handoff settings: opening hours validated (IANA zones only, "HH:MM-HH:MM" ranges neither
inverted nor overlapping, bounded lists), open/closed and the next opening on fixed clocks
(a daylight-saving change included), and hostile values refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from app.server.assistant_schema import AssistantSettings, WidgetConfig
from app.server.handoff_schema import HandoffHours, HandoffSettings


def hours(**fields: Any) -> HandoffHours:
    return HandoffHours.model_validate(fields)


@pytest.mark.parametrize(
    "timezone",
    [
        "Mars/Olympus",
        "../../etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "EST5EDT,M3.2.0,M11.1.0",
        "Europe/Madrid\x00",
        "Europe/" + "A" * 80,
        "",
    ],
)
def test_bad_timezones_are_refused(timezone: str) -> None:
    with pytest.raises(ValidationError):
        hours(timezone=timezone)


@pytest.mark.parametrize(
    "ranges",
    [
        ["17:00-09:00"],  # inverted
        ["09:00-09:00"],  # empty
        ["09:00-12:00", "11:00-13:00"],  # overlapping
        ["14:00-18:00", "08:00-14:30"],  # overlapping, out of order
        ["9:00-12:00"],
        ["09:00-24:30"],
        ["25:00-26:00"],
        ["09:00 - 12:00"],
        ["09:00-12:00<script>"],
        ["09:00-10:00"] * 7,  # too many
    ],
)
def test_bad_ranges_are_refused(ranges: list[str]) -> None:
    with pytest.raises(ValidationError):
        hours(schedule={"mon": ranges})


def test_unknown_weekdays_and_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        hours(schedule={"funday": ["09:00-10:00"]})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"enabled": True, "notify_email": "not an email"})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"offer_after_unanswered": -1})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"offline_message": {"en": "x" * 601}})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"offline_message": {"en": "back \u202e soon"}})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"offline_message": {f"l{i:02d}": "x" for i in range(41)}})
    with pytest.raises(ValidationError):
        HandoffSettings.model_validate({"secret": 1})


def test_adjacent_ranges_and_midnight_are_fine() -> None:
    h = hours(timezone="Europe/Madrid", schedule={"fri": ["18:00-24:00", "09:00-18:00"]})
    friday_2330_madrid = datetime(2026, 12, 4, 22, 30, tzinfo=UTC)
    assert h.is_open(friday_2330_madrid)


def test_open_closed_and_next_opening() -> None:
    h = hours(timezone="Europe/Madrid", schedule={"mon": ["09:00-13:00", "14:00-18:00"]})
    assert h.is_open(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))  # Monday 09:00 Madrid
    assert not h.is_open(datetime(2026, 11, 30, 7, 59, tzinfo=UTC))
    assert not h.is_open(datetime(2026, 11, 30, 12, 30, tzinfo=UTC))  # lunch
    assert not h.is_open(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))  # Tuesday: closed all day
    lunch = h.next_opening(datetime(2026, 11, 30, 12, 30, tzinfo=UTC))
    assert lunch is not None and lunch.isoformat() == "2026-11-30T14:00:00+01:00"
    tuesday = h.next_opening(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert tuesday is not None and tuesday.isoformat() == "2026-12-07T09:00:00+01:00"
    assert hours().is_open(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))  # no schedule: always
    assert hours().next_opening(datetime(2026, 12, 1, tzinfo=UTC)) is None


def test_daylight_saving_follows_the_zone() -> None:
    h = hours(timezone="Europe/Madrid", schedule={"mon": ["09:00-10:00"]})
    assert h.is_open(datetime(2026, 3, 30, 7, 30, tzinfo=UTC))  # CEST: 09:30 local
    assert not h.is_open(datetime(2026, 3, 30, 8, 30, tzinfo=UTC))


def test_widget_config_shows_only_enabled() -> None:
    settings = AssistantSettings.model_validate(
        {
            "handoff": {
                "enabled": True,
                "hours": {"timezone": "Asia/Tokyo", "schedule": {"mon": ["09:00-10:00"]}},
                "notify_email": "ops@example.com",
                "offline_message": {"en": "later"},
            }
        }
    )
    config = WidgetConfig.of("shop", settings).model_dump()
    assert config["handoff"] == {"enabled": True}
    assert "ops@example.com" not in str(config) and "Tokyo" not in str(config)
