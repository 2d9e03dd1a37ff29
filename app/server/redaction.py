"""Contact details taken out of stored messages (KBCHAT_REDACT_CONTACTS): emails become `[email]`
and phone numbers `[phone]` before a question, an answer or an operator's reply is written.

Only storage is redacted: the visitor and the LLM see the turn as typed. Phone numbers are found
by Google's libphonenumber (the `phonenumbers` port) rather than a regex, so years, prices, dates,
order and version numbers stay: a match must be a valid number of some country. International
numbers (+49 ..., +1 ...) are found whatever the country; national formats only for the regions
in REGIONS (the visitor's country is not known)."""

from __future__ import annotations

import re

EMAIL = "[email]"
PHONE = "[phone]"
# National formats of these countries are recognised too ("030 1234567", "(415) 555-2671").
REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PT", "BR", "IN", "JP")
# Local part and domain as people type them; the domain needs a dot and a 2+ letter TLD.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}\b"
)
_LONGEST = 20_000  # libphonenumber is linear but not fast: texts beyond this are cut into parts


def redact_contacts(text: str) -> str:
    """`text` with every email address and phone number replaced by a placeholder."""
    text = _EMAIL_RE.sub(EMAIL, text)
    if not any(c.isdigit() for c in text):
        return text
    return "".join(_redact_phones(text[i : i + _LONGEST]) for i in range(0, len(text), _LONGEST))


def _redact_phones(text: str) -> str:
    from phonenumbers import Leniency, PhoneNumberMatcher  # import cost only when redacting

    spans: list[tuple[int, int]] = []
    for region in REGIONS:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            spans.append((match.start, match.end))
    if not spans:
        return text
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    parts, at = [], 0
    for start, end in merged:
        parts += [text[at:start], PHONE]
        at = end
    return "".join(parts) + text[at:]
