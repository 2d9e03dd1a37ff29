"""Query-side language correction (app/query_correction.py): a synthetic geometry where the
question's language pulls it towards the wrong passage, and the on-disk cache keyed by model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.chat.ranking import Ranker
from app.embeddings.e5 import EmbeddingSpec
from app.query_correction import QueryCorrection, shipped_sentences, spec_folder

SPEC = EmbeddingSpec("test/model-a", "w1", "e5", 4, 512)
OTHER = EmbeddingSpec("test/model-b", "w1", "e5", 4, 512)
# Axes: 0 topic "founding", 1 topic "charging", 2 German-ness, 3 noise.
FOUNDING_EN = np.array([1.0, 0.0, 0.0, 0.0])
CHARGING_DE = np.array([0.15, 0.7, 0.7, 0.0]) / np.linalg.norm([0.15, 0.7, 0.7, 0.0])
QUESTION_DE = np.array([0.62, 0.1, 0.75, 0.0]) / np.linalg.norm([0.62, 0.1, 0.75, 0.0])


class Profile:
    def query(self, text: str) -> str:
        return f"query: {text}"

    def passage(self, text: str) -> str:
        return f"passage: {text}"


class FakeEncoder:
    """German reference sentences all lean along axis 2, with some spread along axis 3."""

    profile = Profile()

    def __init__(self, spec: EmbeddingSpec = SPEC) -> None:
        self.spec = spec
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for i, _ in enumerate(texts):
            v = np.array([0.1 * (i % 3), 0.1 * (i % 2), 1.0, 0.3 * ((-1) ** i)])
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)


SENTENCES = {"de": [f"Satz {i}" for i in range(12)]}


def rank(correction: QueryCorrection | None, language: str | None) -> list[str]:
    names = ["charging_de", "founding_en"]
    vectors = np.array([CHARGING_DE, FOUNDING_EN])
    scores = Ranker(correction).scores(
        "Wann wurde es gegründet?",
        QUESTION_DE,
        language,
        raw=vectors @ QUESTION_DE,
        texts=["", ""],
        languages=["de", "en"],
        vectors=vectors,
    )
    return [names[i] for i in np.argsort(-scores)]


@pytest.mark.parametrize("mode", ["mean", "direction"])
def test_correction_removes_the_question_language_lean(tmp_path: Path, mode: Any) -> None:
    assert rank(None, "de") == ["charging_de", "founding_en"]  # raw: its own language wins
    correction = QueryCorrection(FakeEncoder(), tmp_path, mode=mode, sentences=SENTENCES)
    assert rank(correction, "de") == ["founding_en", "charging_de"]
    corrected = correction.correct(QUESTION_DE, "de")
    assert np.isclose(np.linalg.norm(corrected), 1.0)


def test_a_language_without_reference_sentences_is_left_alone(tmp_path: Path) -> None:
    correction = QueryCorrection(FakeEncoder(), tmp_path, sentences=SENTENCES)
    assert np.array_equal(correction.correct(QUESTION_DE, "xx"), QUESTION_DE)
    assert np.array_equal(correction.correct(QUESTION_DE, None), QUESTION_DE)
    assert rank(correction, "und") == ["charging_de", "founding_en"]


def test_statistics_are_cached_per_model_and_never_shared(tmp_path: Path) -> None:
    first = FakeEncoder()
    QueryCorrection(first, tmp_path, sentences=SENTENCES).correct(QUESTION_DE, "de")
    assert first.calls == 1
    assert (tmp_path / spec_folder(SPEC) / "de.npz").exists()

    again = FakeEncoder()  # a new process, same model: read from disk, nothing embedded
    QueryCorrection(again, tmp_path, sentences=SENTENCES).correct(QUESTION_DE, "de")
    assert again.calls == 0

    other = FakeEncoder(OTHER)  # another model: its own statistics, in its own folder
    QueryCorrection(other, tmp_path, sentences=SENTENCES).correct(QUESTION_DE, "de")
    assert other.calls == 1
    assert spec_folder(OTHER) != spec_folder(SPEC)
    assert (tmp_path / spec_folder(OTHER) / "de.npz").exists()

    # A file that claims another model (copied by hand) is not trusted.
    (tmp_path / spec_folder(OTHER) / "de.npz").replace(tmp_path / spec_folder(SPEC) / "de.npz")
    fresh = FakeEncoder()
    QueryCorrection(fresh, tmp_path, sentences=SENTENCES).correct(QUESTION_DE, "de")
    assert fresh.calls == 1


def test_the_shipped_sample_covers_the_detector_languages() -> None:
    sample = shipped_sentences()
    assert {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh", "ja"} <= set(
        sample
    )
    assert all(100 <= len(rows) <= 300 for rows in sample.values() if len(rows) >= 100)


class TwoLanguageEncoder(FakeEncoder):
    """German reference sentences lean along axis 2, English ones along axis 3."""

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        axis = 2 if texts[0].startswith("query: Satz") else 3
        rows = []
        for i, _ in enumerate(texts):
            v = np.array([0.1 * (i % 3), 0.1 * (i % 2), 0.0, 0.0])
            v[axis] = 1.0
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)


def test_shift_moves_a_question_to_the_knowledge_base_languages(tmp_path: Path) -> None:
    sentences = {**SENTENCES, "en": [f"Sentence {i}" for i in range(12)]}
    shift = QueryCorrection(TwoLanguageEncoder(), tmp_path, mode="shift", sentences=sentences)
    # A German question over an English knowledge base loses German, gains English.
    moved = shift.correct(QUESTION_DE, "de", {"en": 40})
    assert moved[2] < QUESTION_DE[2] and moved[3] > 0
    assert np.isclose(np.linalg.norm(moved), 1.0)
    # Over a German knowledge base it is left as it is, and without a target too.
    assert np.allclose(shift.correct(QUESTION_DE, "de", {"de": 40}), QUESTION_DE)
    assert np.allclose(shift.correct(QUESTION_DE, "de"), QUESTION_DE)
    # Languages without sentences ("und") are left out of the blend.
    assert np.allclose(shift.correct(QUESTION_DE, "de", {"de": 10, "und": 99}), QUESTION_DE)
    # And the ranking: the centring-free geometry above, German lean removed, English added.
    scores = Ranker(shift).scores(
        "q",
        QUESTION_DE,
        "de",
        raw=[0.0, 0.0],
        texts=["", ""],
        languages=["de", "en"],
        vectors=np.array([CHARGING_DE, FOUNDING_EN]),
    )
    assert scores[1] > scores[0]
