"""Source lists as users see them: each passage once, the cited ones first.

Numbers are given once, right after retrieval (`distinct_sources`), and never change after the
answer is written: the answer's [n] and `ChatResult.cited` keep meaning the same passage in every
front end (CLI, API, SSE, /v1, Gradio, widget). `cited_first` only reorders the list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from app.chat.types import Source

NEAR_IDENTICAL = 0.9  # Jaccard similarity of character 5-grams: the same text, lightly edited
_SPACE = re.compile(r"\s+")


def _shingles(text: str) -> frozenset[str]:
    """Character 5-grams of the normalised text: language-neutral (no word splitting), and
    linear, where difflib's ratio is quadratic (2.5 s for five 2,000-character passages)."""
    text = _SPACE.sub(" ", text).strip().casefold()
    return frozenset(text[i : i + 5] for i in range(max(1, len(text) - 4)))


def _same(a: frozenset[str], b: frozenset[str]) -> bool:
    """Jaccard similarity at least NEAR_IDENTICAL. It cannot exceed the ratio of the sets'
    sizes, so most pairs are told apart by their sizes alone; the union is counted, not built
    (distinct_sources took ~0.5 ms of CPU a turn, half of it building unions)."""
    if a == b:
        return True
    small, large = sorted((len(a), len(b)))
    if small < NEAR_IDENTICAL * large:
        return False
    common = len(a & b)
    return common >= NEAR_IDENTICAL * (len(a) + len(b) - common)


def distinct_sources(sources: Sequence[Source]) -> list[Source]:
    """Ranked sources without repeats, numbered 1..n again: a second hit on the same chunk of
    the same file, or a passage (near-)identical to a better-ranked one from another file, is
    dropped; the better-ranked one stays."""
    kept: list[Source] = []
    seen: set[tuple[str, int, int | None]] = set()
    texts: list[frozenset[str]] = []
    for s in sources:
        key = (s.source, s.chunk_index, s.page)
        text = _shingles(s.text)
        if key in seen or any(_same(text, t) for t in texts):
            continue
        seen.add(key)
        texts.append(text)
        kept.append(s if s.number == len(kept) + 1 else replace(s, number=len(kept) + 1))
    return kept


def cited_first(sources: Sequence[Source], cited: Sequence[int]) -> list[Source]:
    """The cited sources (in rank order), then the rest; numbers unchanged."""
    marked = set(cited)
    return [s for s in sources if s.number in marked] + [
        s for s in sources if s.number not in marked
    ]
