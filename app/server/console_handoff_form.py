"""The handoff part of the console's assistant form (app.server.console_assistant_form), without
Gradio: HandoffSettings as six form values and back.

The weekly schedule is one weekday per line ("mon 09:00-13:00 14:00-18:00") and the offline
message one language per line ("es: Volvemos el lunes."), so the form stays a handful of boxes.
Everything here only reshapes text, within size limits; the values are then checked by the same
HandoffSettings model as the admin API (time zone, ranges, languages, email)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from app.server.handoff_schema import MAX_OFFLINE, WEEKDAYS

if TYPE_CHECKING:
    from app.server.handoff_schema import HandoffSettings

# The form's handoff fields, in the order of the page's components.
HANDOFF_FIELDS = (
    "handoff_enabled",
    "handoff_offer_after",
    "handoff_timezone",
    "handoff_schedule",
    "handoff_offline",
    "handoff_email",
)
HANDOFF_LABELS = {
    "handoff": "Handoff",
    "enabled": "on",
    "offer_after_unanswered": "offer after N unanswered",
    "hours": "hours",
    "timezone": "time zone",
    "schedule": "schedule",
    "offline_message": "offline message",
    "notify_email": "notify email",
}
MAX_SCHEDULE = 1000  # characters: 7 lines of a few ranges
MAX_OFFLINE_BOX = 40 * (MAX_OFFLINE + 40)
_DAY_LINE = re.compile(r"^([a-z]{3})\s*:?\s*(.*)$")
_TEXT_LINE = re.compile(r"^([A-Za-z0-9-]{1,35})\s*:\s*(.*)$")


class HandoffFormError(ValueError):
    """A handoff value the form refuses; the message is for the operator."""


def handoff_values(handoff: HandoffSettings) -> dict[str, Any]:
    """The form's values for `handoff`."""
    schedule = "\n".join(
        f"{day} {' '.join(handoff.hours.schedule[day])}"
        for day in WEEKDAYS
        if day in handoff.hours.schedule
    )
    offline = "\n".join(f"{lang}: {text}" for lang, text in handoff.offline_message.items())
    return {
        "handoff_enabled": handoff.enabled,
        "handoff_offer_after": handoff.offer_after_unanswered,
        "handoff_timezone": handoff.hours.timezone,
        "handoff_schedule": schedule,
        "handoff_offline": offline,
        "handoff_email": handoff.notify_email or "",
    }


def _text(value: Any, label: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HandoffFormError(f"Handoff › {label}: must be text.")
    if len(value) > limit:
        raise HandoffFormError(f"Handoff › {label}: at most {limit} characters.")
    return value


def _schedule(text: str) -> dict[str, list[str]]:
    days: dict[str, list[str]] = {}
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        m = _DAY_LINE.match(line)
        if not m or m[1] not in WEEKDAYS:
            raise HandoffFormError(
                "Handoff › schedule: one weekday per line, like mon 09:00-13:00 14:00-18:00."
            )
        if m[1] in days:
            raise HandoffFormError(f"Handoff › schedule: {m[1]} appears twice.")
        days[m[1]] = m[2].replace(",", " ").split()
    return days


def _offline(text: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        m = _TEXT_LINE.match(line)
        if not m:
            raise HandoffFormError(
                "Handoff › offline message: one language per line, like es: Volvemos el lunes."
            )
        if m[1] in texts:
            raise HandoffFormError(f"Handoff › offline message: {m[1]} appears twice.")
        texts[m[1]] = m[2].strip()
    return texts


def handoff_body(values: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """The `handoff` group of the settings' body from the form (fields the form does not show
    are kept from `stored`); HandoffSettings then checks every value."""
    enabled = values.get("handoff_enabled")
    if not isinstance(enabled, bool):
        raise HandoffFormError("Handoff › on: on or off.")
    offer = values.get("handoff_offer_after")
    whole = isinstance(offer, int) or (isinstance(offer, float) and offer.is_integer())
    if offer is None or offer == "":
        offer = 0
    elif isinstance(offer, bool) or not whole:
        raise HandoffFormError("Handoff › offer after N unanswered: must be a whole number.")
    base = stored or {}
    hours = base.get("hours") if isinstance(base.get("hours"), dict) else {}
    timezone = _text(values.get("handoff_timezone"), "time zone", 64).strip() or "UTC"
    email = _text(values.get("handoff_email"), "notify email", 254).strip()
    return {
        **base,
        "enabled": enabled,
        "offer_after_unanswered": int(offer),
        "hours": {
            **(hours or {}),
            "timezone": timezone,
            "schedule": _schedule(_text(values.get("handoff_schedule"), "schedule", MAX_SCHEDULE)),
        },
        "offline_message": _offline(
            _text(values.get("handoff_offline"), "offline message", MAX_OFFLINE_BOX)
        ),
        "notify_email": email or None,
    }
