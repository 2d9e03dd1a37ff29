"""An assistant's human-handoff settings (`AssistantSettings.handoff`), with a limit on every
field: opening hours in an IANA time zone, a weekly schedule of "HH:MM-HH:MM" ranges, the
offline message per language, and the operator's notification email.

The public widget config gets `enabled` only: never the hours' details or the email."""

from __future__ import annotations

import itertools
import re
import unicodedata
from datetime import datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from app.server.inputs import Text

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RANGES = 6  # per weekday: a split shift or two is plenty
MAX_TIMEZONE = 64
MAX_OFFLINE = 600
MAX_EMAIL = 254
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


def _timezone(value: str) -> str:
    """An IANA name zoneinfo knows ("Europe/Madrid"); never a path or a POSIX TZ string."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}", value):
        raise ValueError("timezone must be an IANA name such as Europe/Madrid")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {value!r}") from exc
    return value


def parse_range(value: str) -> tuple[int, int]:
    """ "09:00-17:30" as minutes since midnight (start, end); "24:00" may end a day."""
    m = _RANGE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not HH:MM-HH:MM")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    if end > 24 * 60:
        raise ValueError(f"{value!r} ends after 24:00")
    if end <= start:
        raise ValueError(f"{value!r} ends before it starts")
    return start, end


def _ranges(values: list[str]) -> list[str]:
    spans = sorted(parse_range(v) for v in values)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError("opening ranges of one day must not overlap")
    return values


Range = Annotated[Text, Field(max_length=11)]
DayRanges = Annotated[list[Range], Field(max_length=MAX_RANGES), AfterValidator(_ranges)]


def _plain(value: str) -> str:
    """No control or format characters (bidi overrides included) except newlines."""
    if any(c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co"} for c in value):
        raise ValueError("control characters are not allowed")
    return value


OfflineText = Annotated[Text, Field(min_length=1, max_length=MAX_OFFLINE), AfterValidator(_plain)]


class HandoffHours(BaseModel):
    """When a person can answer. An empty schedule: always open. A weekday missing from a
    non-empty schedule (or with no ranges): closed that day."""

    model_config = ConfigDict(extra="forbid")
    timezone: Annotated[Text, Field(max_length=MAX_TIMEZONE), AfterValidator(_timezone)] = Field(
        "UTC", description="IANA time zone of the schedule."
    )
    schedule: dict[Weekday, DayRanges] = Field(
        default_factory=dict,
        max_length=7,
        description='Per weekday (mon..sun) a list of "HH:MM-HH:MM" ranges; empty: always open.',
    )

    def is_open(self, now: datetime) -> bool:
        if not self.schedule:
            return True
        local = now.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        day = WEEKDAYS[local.weekday()]
        return any(s <= minute < e for s, e in map(parse_range, self.schedule.get(day, [])))

    def next_opening(self, now: datetime) -> datetime | None:
        """The next time the team is in (in the schedule's zone); None: never or always."""
        if not self.schedule:
            return None
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            starts = sorted(
                s for s, _ in map(parse_range, self.schedule.get(WEEKDAYS[day.weekday()], []))
            )
            for start in starts:
                at = datetime.combine(day, time(start // 60, start % 60), zone)
                if at > local:
                    return at
        return None


class HandoffSettings(BaseModel):
    """Whether visitors may ask for a person, and how the operator hears about it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Visitors may ask for a person.")
    offer_after_unanswered: int = Field(
        2,
        ge=0,
        le=20,
        description="Offer a person after this many answers in a row found nothing; 0: never.",
    )
    hours: HandoffHours = Field(default_factory=HandoffHours)
    offline_message: dict[
        Annotated[Text, Field(pattern=r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$", max_length=35)],
        OfflineText,
    ] = Field(
        default_factory=dict,
        max_length=40,
        description="Shown outside hours, per language (plain text); unset: a default saying "
        "when the team is back.",
    )
    notify_email: Annotated[EmailStr, Field(max_length=MAX_EMAIL)] | None = Field(
        None, description="Emailed on each new handoff (needs KBCHAT_SMTP_HOST)."
    )


class HandoffConfig(BaseModel):
    """The widget's part of HandoffSettings."""

    enabled: bool
