"""Tokens for the console's widget preview: `/a/{assistant}?preview=TOKEN` shows an assistant's
widget, full page on or off, to whoever holds a token the unlocked console minted.

A token is `{expiry}.{mac}`: an HMAC-SHA256, keyed by the admin key, of the assistant's id and
the expiry. So it names one assistant, lapses after PREVIEW_TTL_S, works on every replica
(they share the admin key), needs no storage, and dies with the admin key when it is rotated.
It opens a read-only view of what visitors of that assistant would see (never its persona,
keys, caps or webhook), so a leaked token reveals little and only for a while."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

PREVIEW_TTL_S = 30 * 60
MAX_TOKEN = 64
_TOKEN = re.compile(r"^(\d{1,12})\.([0-9a-f]{32})$")
_CONTEXT = b"kbchat-widget-preview\0"


def _mac(admin_key: str, assistant: str, expiry: int) -> str:
    message = _CONTEXT + f"{assistant}\0{expiry}".encode()
    return hmac.new(admin_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def mint(admin_key: str, assistant: str, now: float | None = None) -> str:
    """A token for `assistant`, valid PREVIEW_TTL_S from `now`."""
    expiry = int(now if now is not None else time.time()) + PREVIEW_TTL_S
    return f"{expiry}.{_mac(admin_key, assistant, expiry)}"


def verify(admin_key: str | None, assistant: str, token: str, now: float | None = None) -> bool:
    """True for an unexpired token minted with this admin key for this assistant."""
    if not admin_key or len(token) > MAX_TOKEN:
        return False
    match = _TOKEN.match(token)
    if match is None:
        return False
    expiry = int(match.group(1))
    if expiry < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(match.group(2), _mac(admin_key, assistant, expiry))
