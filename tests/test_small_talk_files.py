"""Small-talk exemplars and relevance reference sentences are valid data; the rules' pure parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.chat.relevance import Relevance, load_reference_sentences
from app.chat.retriever import Retriever
from app.chat.small_talk import KINDS, length_fits, load_exemplars
from tests.fakes import FakeEmbedder

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def test_every_exemplar_language_has_both_replies() -> None:
    messages = json.loads((PROMPTS / "messages.json").read_text(encoding="utf-8"))
    exemplars = load_exemplars(PROMPTS / "small_talk.json")
    for kind in KINDS:
        assert {e.language for e in exemplars if e.kind == kind} == set(messages)
    assert all(len(e.text) <= 30 for e in exemplars)  # MAX_CHARS and length_fits rely on it


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small_talk.json"
    path.write_text(json.dumps({"hello": {"en": ["Hi"]}, "weather": {"en": ["Nice day"]}}))
    with pytest.raises(ValueError, match="weather"):
        load_exemplars(path)


def test_a_question_behind_a_greeting_is_too_long_for_the_greeting() -> None:
    assert length_fits("hey, how's it going?", "How are you?")
    assert length_fits("谢谢你的帮助", "谢谢！")
    assert not length_fits("Hello, what is the battery warranty?", "Hello!")


def test_reference_sentences_cover_many_languages_and_credit_tatoeba() -> None:
    sentences = load_reference_sentences()
    assert len(sentences) >= 300 and not any(s.startswith("#") for s in sentences)
    text = (PROMPTS.parent / "app" / "data" / "reference_sentences.txt").read_text("utf-8")
    assert "Tatoeba" in text.splitlines()[1] or "Tatoeba" in text.splitlines()[2]


class _Store:
    """Only what the retriever asks of a store when a relevance rule is set."""

    def __init__(self, embeddings: Any) -> None:
        self.embeddings = embeddings

    def similarity_search_by_vector_with_relevance_scores(self, vector: Any, k: int) -> list:
        from langchain_core.documents import Document

        return [(Document("a", metadata={"source": "a.txt"}), 1 - 0.80)][:k]

    def similarity_search_with_score(self, query: str, k: int) -> list:
        return self.similarity_search_by_vector_with_relevance_scores(None, k)


def test_the_margin_raises_the_cut_off_per_query_and_never_lowers_it() -> None:
    embedder = FakeEmbedder()
    relevance = Relevance(embedder, 0.0, ["reference one", "reference two"])  # type: ignore[arg-type]
    vector = np.asarray(embedder.embed_query("frage"))
    background = relevance.background(vector)
    assert relevance.cutoff(vector) == round(background, 4)
    store = _Store(embedder)
    high = Relevance(embedder, 0.80 - background + 0.01, ["reference one", "reference two"])  # type: ignore[arg-type]
    assert Retriever(store, k=3, min_score=0.5).retrieve("frage")  # type: ignore[arg-type]
    assert not Retriever(store, k=3, min_score=0.5, relevance=high).retrieve("frage")  # type: ignore[arg-type]
    low = Relevance(embedder, -5.0, ["reference one"])  # type: ignore[arg-type]
    assert not Retriever(store, k=3, min_score=0.9, relevance=low).retrieve("frage")  # type: ignore[arg-type]
