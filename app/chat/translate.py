"""Query translation: the condense step also writes the question in the knowledge base's languages.

E5 ranks a passage higher when it shares the question's language, and a question asked in one
language finds a passage in another less reliably than one in its own. When an LLM is configured
and `llm.translate_query` is on, the one condense call (prompts/condense_translate.txt) returns
the standalone question plus its translations into the knowledge base's main languages, one line
per language (`de: ...`); retrieval runs each variant and fuses them (app/chat/fusion.py).

The model's reply is untrusted text. `parse_variants` keeps only labelled lines in the languages
asked for, of bounded length and count, and anything it cannot read gives no variants at all:
the chain then searches with the plain question, exactly as without translation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.chat.prompts import PromptSet
    from app.language_stats import CollectionMeans

MAX_VARIANT_CHARS = 400
"""Longest standalone question or translation kept; a longer line is not a question."""
_MAX_LINES = 40  # lines of the reply looked at; the rest is not read
_MAX_REPLY_CHARS = 16_000
_TEMPLATE = ("the question in", "the standalone question")  # prompts/condense_translate.txt
_LABEL = re.compile(
    r"^[\s>*_\-•#]*(?P<label>[A-Za-z][A-Za-z ()\-]{0,40}?)[\s*_]*[:：]\s*(?P<text>.*)$"
)


@dataclass(frozen=True)
class QueryTranslation:
    """What the chain needs to translate: the target languages, looked up at each question
    (the knowledge base changes), and their English names for the prompt."""

    languages: Callable[[], Sequence[str]]
    names: Mapping[str, str] = field(default_factory=dict)  # code -> English name, for the prompt


@dataclass(frozen=True)
class Variants:
    """The parsed reply: the standalone question (None when the reply had none) and the
    translations, in the order the languages were asked for."""

    standalone: str | None
    translations: dict[str, str]


def main_languages(
    counts: Mapping[str, int], *, limit: int = 3, coverage: float = 0.8
) -> list[str]:
    """The languages most chunks are in: by chunk count, until they cover `coverage` of the
    chunks or `limit` languages. Ties go to English first (the language multilingual encoders
    align best), then by code, so the choice is stable. Undetermined chunks do not count."""
    known = {lang: n for lang, n in counts.items() if lang and lang != "und" and n > 0}
    total = sum(known.values())
    chosen: list[str] = []
    covered = 0
    for lang in sorted(known, key=lambda x: (-known[x], x != "en", x)):
        if len(chosen) >= limit or (total and covered >= coverage * total):
            break
        chosen.append(lang)
        covered += known[lang]
    return chosen


def kb_translation(means: CollectionMeans, prompts: PromptSet, limit: int) -> QueryTranslation:
    """Translation into the collection's main languages, from the per-language chunk counts
    recorded with its means (app/language_stats.py), read again at each question."""

    def languages() -> list[str]:
        current = means.current()
        return main_languages(current.counts, limit=limit) if current is not None else []

    names = {code: entry["name_en"] for code, entry in prompts.messages.items()}
    return QueryTranslation(languages, names)


def language_lines(languages: Sequence[str], names: Mapping[str, str]) -> str:
    """The reply template's translation lines, e.g. `de: <the question in German>`."""
    return "\n".join(f"{code}: <the question in {names.get(code, code)}>" for code in languages)


def prompt_inputs(
    question: str, transcript: str, languages: Sequence[str], names: Mapping[str, str]
) -> dict[str, str]:
    """The values of prompts/condense_translate.txt's placeholders."""
    return {
        "history": transcript or "(none)",
        "question": question,
        "languages": language_lines(languages, names),
    }


def parse_variants(reply: str, languages: Sequence[str], names: Mapping[str, str]) -> Variants:
    """Read `question: ...` and `xx: ...` lines (a language may also be named in English);
    drop everything else. Never raises; an unreadable reply gives Variants(None, {})."""
    wanted = {code.lower(): code for code in languages}
    by_name = {names.get(code, code).lower(): code for code in languages}
    standalone: str | None = None
    translations: dict[str, str] = {}
    lines = [line for line in reply[:_MAX_REPLY_CHARS].splitlines() if line.strip()]
    for line in lines[:_MAX_LINES]:
        found = _LABEL.match(line)
        if found is None:
            continue
        label = found["label"].strip().lower()
        text = _clean(found["text"])
        if text is None:
            continue
        if label in ("question", "standalone question", "standalone"):
            standalone = standalone or text
            continue
        code = wanted.get(label) or by_name.get(label) or wanted.get(label.split("-")[0])
        if code is not None and code not in translations:
            translations[code] = text
    ordered = {code: translations[code] for code in languages if code in translations}
    return Variants(standalone, ordered)


def queries(standalone: str, variants: Variants) -> list[str]:
    """The searches to run: the standalone question first, then each distinct translation."""
    out = [standalone]
    seen = {standalone.strip().casefold()}
    for text in variants.translations.values():
        key = text.strip().casefold()
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


def _clean(text: str) -> str | None:
    text = text.strip().strip("\"'“”«»「」*").strip()
    if not text or len(text) > MAX_VARIANT_CHARS:
        return None
    if text.startswith("<") and text.endswith(">"):  # kept the template's brackets
        text = text[1:-1].strip()
        if not text or text.casefold().startswith(_TEMPLATE):  # or echoed the template itself
            return None
    return text
