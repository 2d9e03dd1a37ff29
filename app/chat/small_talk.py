"""Recognise small talk (greetings, thanks, goodbyes, "who are you") in any language.

A greeting sent to retrieval comes back with five unrelated passages, because E5 scores crowd
into 0.7-1.0 whatever the text. Instead the user turn is embedded in the query form and compared
with short exemplars in 31 languages (prompts/small_talk.json); a turn that is short and close
enough in meaning to one gets a canned reply of that exemplar's kind, without retrieval. The
model's own cross-lingual space carries the rule to languages without exemplars.

The threshold is calibrated per model (bench/calibrate_small_talk.py, docs/calibration.md):
held-apart small-talk phrasings against every XQuAD dev question and questions that merely start
with a greeting ("Hello, what is the battery warranty?"). A model without a calibrated value
gets no small-talk detection, as it gets no relevance cut-off.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from app.embeddings.e5 import E5Embeddings

Kind = Literal["hello", "bye", "handoff"]  # handoff: asking for a person (handoff_phrases.json)
KINDS: tuple[Kind, ...] = ("hello", "bye")

# Calibrated on held-apart phrasings vs XQuAD dev questions (bench/calibrate_small_talk.py).
CALIBRATED_SMALL_TALK_SCORE: dict[str, float] = {
    "intfloat/multilingual-e5-small": 0.9,
}
MAX_CHARS = 60
"""Longer turns are never small talk: the longest exemplar is 30 characters, and a real
question with a greeting in front of it is longer than the greeting alone."""


_VECTORS: weakref.WeakKeyDictionary[E5Embeddings, dict[tuple[str, ...], np.ndarray]]
_VECTORS = weakref.WeakKeyDictionary()
"""Exemplar vectors per loaded model: every chain built on one embedder (a server's, a test
session's) embeds the few hundred exemplars once."""


def length_fits(text: str, exemplar: str) -> bool:
    """A turn far longer than the exemplar it resembles says more than the exemplar: "Hello,
    what is the battery warranty?" is a question that starts with "Hello!"."""
    return len(text) <= 2 * len(exemplar) + 8


def default_small_talk_score(model_id: str) -> float | None:
    return CALIBRATED_SMALL_TALK_SCORE.get(model_id)


@dataclass(frozen=True)
class Exemplar:
    kind: Kind
    language: str
    text: str


@dataclass(frozen=True)
class SmallTalkMatch:
    kind: Kind
    language: str  # the nearest exemplar's language: short turns are too short to detect
    score: float  # cosine similarity to that exemplar
    exemplar: str


def load_exemplars(path: Path, kinds: tuple[Kind, ...] = KINDS) -> list[Exemplar]:
    """`{kind: {language: [text, ...]}}`; keys starting with "_" are comments. `kinds`: those
    the file may hold (small talk's, or ("handoff",) for the handoff phrases)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = {k for k in data if not k.startswith("_")} - set(kinds)
    if unknown:
        raise ValueError(f"{path}: unknown small-talk kinds {sorted(unknown)}")
    return [
        Exemplar(kind, language, text)
        for kind in kinds
        for language, texts in data.get(kind, {}).items()
        for text in texts
    ]


class SmallTalk:
    """Matches a user turn against the exemplars; their vectors are computed on first use."""

    def __init__(
        self,
        embedder: E5Embeddings,
        exemplars: list[Exemplar],
        *,
        min_score: float,
        max_chars: int = MAX_CHARS,
        cache_dir: Path | None = None,
    ) -> None:
        """`cache_dir`: where the exemplars' vectors are kept between processes
        (app.embeddings.vector_cache); None embeds them in every process."""
        if not exemplars:
            raise ValueError("small-talk detection needs at least one exemplar")
        self.embedder = embedder
        self.exemplars = exemplars
        self.min_score = min_score
        self.max_chars = max_chars
        self.cache_dir = cache_dir
        self._vectors: np.ndarray | None = None

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            texts = tuple(e.text for e in self.exemplars)
            known = _VECTORS.setdefault(self.embedder, {})
            if texts not in known:
                from app.embeddings.vector_cache import cached_vectors

                query = self.embedder.profile.query
                known[texts] = cached_vectors(
                    lambda rows: self.embedder.encode([query(t) for t in rows]),
                    texts,
                    spec=self.embedder.spec,
                    form=query("{text}"),
                    cache_dir=self.cache_dir,
                    name="-".join(sorted({e.kind for e in self.exemplars})),
                )
            self._vectors = known[texts]
        return self._vectors

    def match(self, text: str) -> SmallTalkMatch | None:
        """The nearest exemplar when `text` is small talk, else None."""
        text = " ".join(text.split())
        if not text or len(text) > self.max_chars:
            return None
        query = np.asarray(self.embedder.embed_query(text), dtype=np.float32)
        scores = self.vectors @ query
        best = int(np.argmax(scores))
        e = self.exemplars[best]
        if float(scores[best]) < self.min_score or not length_fits(text, e.text):
            return None
        return SmallTalkMatch(e.kind, e.language, round(float(scores[best]), 4), e.text)
