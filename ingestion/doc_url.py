"""A document's own web address, where the document states one, for the citation's link.

HTML states it as ``<link rel="canonical">`` (else ``<meta property="og:url">``), Markdown and
text files in YAML front matter (``url:``, else ``source_url:``, else ``canonical_url:``; the
block is metadata, so it is taken out of the text). The address reaches visitors as a link, so
only an absolute http(s) URL of at most ``MAX_URL_CHARS`` characters, without credentials,
whitespace or control characters is kept (`web_url`); anything else is dropped with a debug line
and the document is ingested without it. Retrieval checks stored addresses again, so a value
written straight into the store is held to the same rule.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
# Front matter is a short header: a longer one is not front matter (and not worth parsing).
MAX_FRONT_MATTER_CHARS = 16 * 1024
FRONT_MATTER_KEYS = ("url", "source_url", "canonical_url")
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_SCHEMES = frozenset({"http", "https"})


def _bad_char(ch: str) -> bool:
    """Whitespace, control, format (bidi overrides), private-use or unassigned characters: none
    belongs in an address a visitor is asked to trust, and a backslash is a slash to browsers."""
    return ch == "\\" or unicodedata.category(ch)[0] in "CZ"


def web_url(value: object) -> str | None:
    """``value`` if it is a safe absolute http(s) address to link to, else None."""
    if not isinstance(value, str):
        return None
    url = value.strip(" \t\n\r\f")  # what HTML and YAML allow around a value
    if not url or len(url) > MAX_URL_CHARS or any(_bad_char(ch) for ch in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        return None
    if "@" in parts.netloc:  # user:pass@host, or a user name that disguises the host
        return None
    return url


def _kept(value: object, where: str) -> str:
    url = web_url(value)
    if url is None and value not in (None, ""):
        logger.debug("document URL in %s dropped (not a safe absolute http(s) URL)", where)
    return url or ""


def html_url(soup: Any) -> str:
    """The page's canonical address, else its og:url; "" when neither is a safe one.

    Called on the parsed page before ``<head>`` is dropped."""
    for link in soup.find_all("link", href=True):
        rel = link.get("rel") or []
        rels = rel.split() if isinstance(rel, str) else rel
        if "canonical" in (r.lower() for r in rels):
            return _kept(link["href"], "<link rel=canonical>")
    for meta in soup.find_all("meta", content=True):
        if str(meta.get("property", "")).strip().lower() == "og:url":
            return _kept(meta["content"], "<meta property=og:url>")
    return ""


@dataclass(frozen=True)
class FrontMatter:
    """A text file's content without its front matter, and the address the front matter gave."""

    body: str
    url: str = ""


def front_matter(text: str) -> FrontMatter:
    """Split a leading YAML front matter block (a mapping between ``---`` lines) off ``text`` and
    read its ``url`` (else ``source_url``, else ``canonical_url``).

    The block is metadata, not content: left in, it would be embedded and quoted in passages. A
    block that is not a YAML mapping (a broken or hostile one, or a thematic break) is left in
    the text, as is any longer than ``MAX_FRONT_MATTER_CHARS``; either way the file loads."""
    if not text.startswith("---"):
        return FrontMatter(text)
    match = _FRONT_MATTER_RE.match(text[: MAX_FRONT_MATTER_CHARS + 8])
    if match is None:
        return FrontMatter(text)
    import yaml

    try:
        data = yaml.safe_load(match.group(1))
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        logger.debug("front matter not parsed, no document URL: %s", type(exc).__name__)
        return FrontMatter(text)
    if not isinstance(data, dict):
        return FrontMatter(text)
    body = text[match.end() :]
    for key in FRONT_MATTER_KEYS:
        if key in data:
            return FrontMatter(body, _kept(data[key], f"front matter '{key}'"))
    return FrontMatter(body)
