"""Short extractive answers: the one to three sentences of the best passages that answer best.

Without an LLM (or when it fails) the answer is a few sentences with their [n], not whole
passages; the passages themselves stay in the result's sources. Sentences are cut with sentencex
(Wikimedia's rule-based segmenter, ~300 languages, abbreviations and CJK/Arabic/Devanagari
punctuation included) and scored by the embedding model: each sentence in passage form against
the query, plus a share of its passage's own score, because a sentence read alone loses the
context (names, the subject) that made its passage match. Measured on XQuAD dev with
bench/extractive_bench.py (docs/extractive_answers.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ingestion.sentences import SENTENCE_CHARS, bounded, split_sentences

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from app.chat.types import Source

MAX_CHARS = 600  # the whole short answer, citations included
MAX_SENTENCES = 3
_NOT_WORD = re.compile(r"[\W_]+")
_CITATION = re.compile(r"\s*\[\d{1,3}\]")


@dataclass(frozen=True)
class Sentence:
    """One candidate: its text, the [n] of its source, and where it stands in that source."""

    number: int
    text: str
    rank: int  # the source's position in the ranked list
    position: int  # the sentence's position inside the source


class SentencePicker:
    """Picks the answer sentences from the top passages with the embedding model.

    `passages`: how many of the ranked sources are read; `max_candidates` bounds the sentences
    embedded per answer (the CPU cost); a second or third sentence is added only when it scores
    within `margin` of the best one and the answer stays within `max_chars`; `passage_weight`:
    the share of the passage's own similarity added to each of its sentences' scores. Without
    embeddings (tests, a chain built by hand) it falls back to the best passage's first sentence.
    """

    def __init__(
        self,
        embeddings: Embeddings | None,
        *,
        passages: int = 3,
        max_candidates: int = 32,
        max_sentences: int = MAX_SENTENCES,
        max_chars: int = MAX_CHARS,
        margin: float = 0.03,
        passage_weight: float = 0.5,
    ) -> None:
        if max_chars < SENTENCE_CHARS + 8:
            raise ValueError(f"max_chars must leave room for one sentence ({SENTENCE_CHARS + 8})")
        self.embeddings = embeddings
        self.passages = passages
        self.max_candidates = max_candidates
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.margin = margin
        self.passage_weight = passage_weight

    def candidates(self, sources: Sequence[Source]) -> list[Sentence]:
        """The sentences of the top sources, less their title and headings (which the model
        scores high for naming the topic, though they answer nothing)."""
        found: list[Sentence] = []
        for rank, s in enumerate(sources[: self.passages]):
            headings = {_key(h) for h in (s.title, *s.section.split(" > "))}
            for position, text in enumerate(split_sentences(s.text, s.language)):
                if _key(text) not in headings:
                    found.append(Sentence(s.number, text, rank, position))
        if not found and sources:  # only headings: quote the best passage's start, never nothing
            start = bounded(" ".join(sources[0].text.split()), SENTENCE_CHARS)[:1]
            found = [Sentence(sources[0].number, text, 0, 0) for text in start]
        return found[: self.max_candidates]

    def scores(
        self, query: str, candidates: Sequence[Sentence], sources: Sequence[Source]
    ) -> np.ndarray:
        """Each candidate's cosine with the query, plus `passage_weight` x its source's score."""
        if self.embeddings is None:  # reading order: the lead sentence wins by a wide margin
            return -np.array([c.rank * 1000 + c.position for c in candidates], np.float32)
        q = np.asarray(self.embeddings.embed_query(query), dtype=np.float32)
        m = np.asarray(self.embeddings.embed_documents([c.text for c in candidates]), np.float32)
        passage = np.array([sources[c.rank].score for c in candidates], dtype=np.float32)
        return np.asarray(m @ q + self.passage_weight * passage)

    def pick(self, query: str, sources: Sequence[Source]) -> list[Sentence]:
        """At most `max_sentences` sentences, in the order they are best read: grouped by
        source (the source of the best sentence first), each source's in reading order."""
        candidates = self.candidates(sources)
        if not candidates:
            return []
        scores = self.scores(query, candidates, sources)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        chosen = [order[0]]
        used = len(cite(candidates[order[0]]))
        for i in order[1:]:
            if len(chosen) == self.max_sentences or scores[i] < scores[order[0]] - self.margin:
                break
            size = len(cite(candidates[i])) + 1
            if used + size <= self.max_chars:
                chosen.append(i)
                used += size
        first_seen = {candidates[i].rank: n for n, i in reversed(list(enumerate(chosen)))}
        picked = [candidates[i] for i in chosen]
        return sorted(picked, key=lambda c: (first_seen[c.rank], c.position))

    def answer(self, query: str, sources: Sequence[Source]) -> str:
        """The short answer: the picked sentences, each followed by its [n]; '' if none."""
        return " ".join(cite(s) for s in self.pick(query, sources))


def _key(text: str) -> str:
    return _NOT_WORD.sub(" ", text).strip().casefold()


def cite(sentence: Sentence) -> str:
    """A sentence with its source's [n]; a citation-like mark in the text itself is dropped, so
    the answer's [n] always mean our sources."""
    return f"{_CITATION.sub('', sentence.text).strip()} [{sentence.number}]"
