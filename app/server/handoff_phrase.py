"""Recognise a visitor asking for a person, in any language: the small-talk machinery
(app/chat/small_talk.py) with the `handoff` exemplars of prompts/handoff_phrases.json.

A short turn close enough to an exemplar starts a handoff instead of an answer (only for
assistants with handoff enabled). The threshold is calibrated per model on XQuAD dev questions
and questions about people that ask for none (bench/calibrate_handoff_phrases.py); a model
without a calibrated value gets no phrase detection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.chat.small_talk import SmallTalk, SmallTalkMatch, load_exemplars

if TYPE_CHECKING:
    from app.embeddings.e5 import E5Embeddings

MAX_CHARS = 80  # a request for a person is short; a longer turn is a question to answer
CALIBRATED_HANDOFF_SCORE: dict[str, float] = {
    # bench/calibrate_handoff_phrases.py --every 4, docs/calibration.md: no negative of 1,918
    # (XQuAD dev max 0.854, questions about people max 0.873) passes 0.88; 0.89 for a margin
    "intfloat/multilingual-e5-small": 0.89,
}


class HandoffPhrases:
    """`asks_for_person(text)`: the matching exemplar, or None. Vectors are made on first use."""

    def __init__(
        self,
        embedder: E5Embeddings,
        prompts_dir: Path,
        min_score: float,
        cache_dir: Path | None = None,
    ) -> None:
        exemplars = load_exemplars(prompts_dir / "handoff_phrases.json", ("handoff",))
        self._match = SmallTalk(
            embedder, exemplars, min_score=min_score, max_chars=MAX_CHARS, cache_dir=cache_dir
        )

    @classmethod
    def for_model(
        cls, embedder: E5Embeddings, prompts_dir: Path, cache_dir: Path | None = None
    ) -> HandoffPhrases | None:
        """`cache_dir`: where the exemplars' vectors are kept (app.embeddings.vector_cache)."""
        model_id = getattr(getattr(embedder, "spec", None), "model_id", None)
        score = CALIBRATED_HANDOFF_SCORE.get(model_id or "")
        return None if score is None else cls(embedder, prompts_dir, score, cache_dir)

    def prepare(self) -> None:
        """Embed (or read) the exemplars' vectors now, off the request path."""
        _ = self._match.vectors

    def asks_for_person(self, text: str) -> SmallTalkMatch | None:
        return self._match.match(text)
