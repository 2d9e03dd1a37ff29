"""Short extractive answers and the source list: splitting, picking, citing, dedup, order.

Vectors come from a keyword embedder with known geometry (no model, milliseconds); the real
model's picks are tested in tests/test_integration_chat.py.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from app.chat.extractive import MAX_CHARS, SENTENCE_CHARS, SentencePicker, split_sentences
from app.chat.sources import cited_first, distinct_sources
from app.chat.types import Source


class KeywordEmbeddings(Embeddings):
    """One axis per keyword, plus one for everything else: cosine counts shared keywords."""

    def __init__(self, *keywords: str) -> None:
        self.keywords = [k.casefold() for k in keywords]
        self.embedded: list[str] = []

    def _vector(self, text: str) -> list[float]:
        text = text.casefold()
        v = np.array([text.count(k) for k in self.keywords] + [0.5], dtype=np.float32)
        return (v / np.linalg.norm(v)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return [self._vector(t) for t in texts]


def source(number: int, text: str, **kw: Any) -> Source:
    defaults: dict[str, Any] = {
        "source": f"doc{number}.md",
        "title": f"Doc {number}",
        "language": "en",
        "score": 0.85,
    }
    return Source(number=number, text=text, **{**defaults, **kw})


# --------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        (
            "en",
            "Dr. Smith opened the plant in Jan. 1998. It makes 8,000 cars a year! Why? Demand.",
            [
                "Dr. Smith opened the plant in Jan. 1998.",
                "It makes 8,000 cars a year!",
                "Why?",
            ],
        ),
        (
            "zh",
            "公司成立于1998年。总部位于柏林！你知道吗？",
            ["公司成立于1998年。", "总部位于柏林！", "你知道吗？"],
        ),
        (
            "ja",
            "会社は1998年に設立されました。本社はベルリンにあります！",
            ["会社は1998年に設立されました。", "本社はベルリンにあります！"],
        ),
        (
            "ar",
            "تأسست الشركة عام 1998. يقع المقر الرئيسي في برلين! هل تعلم ذلك؟",
            ["تأسست الشركة عام 1998.", "يقع المقر الرئيسي في برلين!", "هل تعلم ذلك؟"],
        ),
        (
            "hi",
            "कंपनी की स्थापना 1998 में हुई थी। मुख्यालय बर्लिन में है।",
            ["कंपनी की स्थापना 1998 में हुई थी।", "मुख्यालय बर्लिन में है।"],
        ),
    ],
)
def test_sentences_split_at_each_scripts_own_punctuation(
    language: str, text: str, expected: list[str]
) -> None:
    assert split_sentences(text, language)[: len(expected)] == expected


def test_thai_sentences_split_at_spaces_and_stay_short() -> None:
    # Thai marks a sentence end with a space, no punctuation: one sentence per space here.
    text = "บริษัทก่อตั้งขึ้นในปี 1998 สำนักงานใหญ่ตั้งอยู่ที่เบอร์ลิน " * 8
    pieces = split_sentences(text.strip(), "th")
    assert len(pieces) > 1
    assert all(len(p) <= 160 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_lines_end_sentences_and_long_runs_are_cut() -> None:
    assert split_sentences("Battery care\nCharge it to 80 % in winter", "en") == [
        "Battery care",
        "Charge it to 80 % in winter",
    ]
    run_on = "word " * 200  # 1000 characters without a full stop
    pieces = split_sentences(run_on, "en")
    assert len(pieces) > 1 and all(len(p) <= SENTENCE_CHARS for p in pieces)
    no_spaces = "字" * 700
    assert all(len(p) <= SENTENCE_CHARS for p in split_sentences(no_spaces, "zh"))


def test_markdown_headings_and_list_markers_are_left_out() -> None:
    text = (
        "## Warranty period  \n- **Battery:** 2 years from the date of purchase.\n1. Blades: none"
    )
    assert split_sentences(text, "en") == [
        "**Battery:** 2 years from the date of purchase.",
        "Blades: none",
    ]


# --------------------------------------------------------------------------- picking


LONG = (
    "The company builds electric cars in three plants. Its vans are sold in 40 countries. "
    "The battery warranty lasts eight years or 160,000 km, whichever comes first. "
    "Service intervals are two years. The paint is guaranteed for twelve years. "
    "Tyres are not covered."
)


def test_the_sentence_that_answers_is_picked_and_cited() -> None:
    picker = SentencePicker(KeywordEmbeddings("battery", "warranty", "paint"))
    sources = [source(1, "Our vans come in six colours."), source(2, LONG)]
    answer = picker.answer("How long is the battery warranty?", sources)
    assert answer.startswith("The battery warranty lasts eight years or 160,000 km")
    assert answer.endswith("[2]")
    assert "Tyres" not in answer and len(answer) <= MAX_CHARS


def test_the_title_and_section_headings_are_no_answer() -> None:
    text = (
        "NORDLICHT ROBOTICS - COMPANY HISTORY\n\nNordlicht Robotics was founded in 2011 in Tromsø."
    )
    history = source(1, text, title="NORDLICHT ROBOTICS - COMPANY HISTORY", section="")
    picker = SentencePicker(KeywordEmbeddings("company", "history", "founded"))
    answer = picker.answer("company history", [history])
    assert answer == "Nordlicht Robotics was founded in 2011 in Tromsø. [1]"


def test_a_passage_of_headings_only_is_still_quoted() -> None:
    picker = SentencePicker(KeywordEmbeddings("warranty"))
    assert picker.answer("warranty", [source(1, "## Warranty")]) == "## Warranty [1]"


def test_at_most_three_sentences_within_600_characters() -> None:
    same = " ".join(f"Battery fact number {i} is here." for i in range(12))
    picker = SentencePicker(KeywordEmbeddings("battery"), margin=1.0)
    sources = [source(n, same) for n in (1, 2, 3)]
    picked = picker.pick("battery", sources)
    assert len(picked) == 3
    answer = picker.answer("battery", sources)
    assert len(answer) <= MAX_CHARS
    assert len(re.findall(r"\[\d\]", answer)) == 3


def test_citations_name_the_sources_of_their_sentences() -> None:
    sources = [
        source(4, "Charging in winter takes longer. The app shows the time left."),
        source(7, "The battery warranty is eight years.", language="en"),
    ]
    picker = SentencePicker(KeywordEmbeddings("winter", "warranty"), margin=1.0)
    answer = picker.answer("winter warranty", sources)
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert numbers <= {4, 7} and numbers
    for piece in re.split(r"(?<=\])\s", answer):
        text, number = piece.rsplit(" [", 1)
        assert text in next(s.text for s in sources if s.number == int(number[:-1]))


def test_a_documents_own_bracket_numbers_do_not_pass_for_citations() -> None:
    sources = [source(1, "The warranty lasts eight years [3].")]
    answer = SentencePicker(KeywordEmbeddings("warranty")).answer("warranty", sources)
    assert answer == "The warranty lasts eight years. [1]"


def test_only_the_top_passages_are_read_and_candidates_are_bounded() -> None:
    embeddings = KeywordEmbeddings("battery")
    many = " ".join(f"Sentence {i} about something." for i in range(100))
    picker = SentencePicker(embeddings, passages=2, max_candidates=20)
    picker.pick("battery", [source(1, many), source(2, many), source(3, "battery " * 5)])
    assert len(embeddings.embedded) == 20
    assert not any("battery" in t for t in embeddings.embedded)


def test_without_embeddings_the_lead_sentence_of_the_best_passage() -> None:
    answer = SentencePicker(None).answer("anything", [source(1, LONG), source(2, "Other.")])
    assert answer == "The company builds electric cars in three plants. [1]"


# --------------------------------------------------------------------------- sources


def test_duplicates_are_dropped_and_numbers_stay_consecutive() -> None:
    text = "The battery warranty lasts eight years."
    sources = [
        source(1, text, source="en/warranty.md"),
        source(2, "Charging takes six hours.", source="en/charging.md"),
        source(3, text, source="en/warranty.md"),  # the same chunk again
        source(4, "The battery warranty lasts  eight years!", source="copy/warranty.md"),
        source(5, "Winter range is lower.", source="en/winter.md"),
    ]
    kept = distinct_sources(sources)
    assert [(s.number, s.source) for s in kept] == [
        (1, "en/warranty.md"),
        (2, "en/charging.md"),
        (3, "en/winter.md"),
    ]


def test_a_lightly_edited_copy_is_dropped_a_related_passage_stays() -> None:
    copy = LONG.replace("three plants", "3 plants").replace("Tyres", "Tires")
    related = (
        "The battery warranty covers the cells and the battery management system. Damage from "
        "accidents is not covered. Service intervals for the battery are two years."
    )
    sources = [source(1, LONG), source(2, copy), source(3, related)]
    assert [(s.number, s.source) for s in distinct_sources(sources)] == [
        (1, "doc1.md"),
        (2, "doc3.md"),
    ]


def test_different_chunks_of_one_file_both_stay() -> None:
    sources = [
        source(1, "The warranty lasts eight years.", chunk_index=0),
        source(2, "Tyres are not covered by it.", chunk_index=1),
    ]
    assert distinct_sources(sources) == sources


def test_cited_sources_come_first_with_their_numbers() -> None:
    sources = [source(n, f"Passage {n}.") for n in (1, 2, 3, 4)]
    ordered = cited_first(sources, [3, 1])
    assert [s.number for s in ordered] == [1, 3, 2, 4]
    assert cited_first(sources, []) == sources


def test_the_size_shortcut_decides_exactly_as_the_plain_jaccard() -> None:
    """`_same` tells most pairs apart by their sets' sizes and counts the union without building
    it (cheaper per turn): it must keep or drop exactly what the plain Jaccard did, for any
    script, short texts and near copies included."""
    import random

    from app.chat import sources as module

    def plain(a: frozenset[str], b: frozenset[str]) -> bool:
        return a == b or len(a & b) >= module.NEAR_IDENTICAL * len(a | b)

    rng = random.Random(12)
    words = [
        "the",
        "battery",
        "warranty",
        "Akku",
        "Garantie",
        "años",
        "batería",
        "日本語",
        "テキスト",
        "Ελλάδα",
        "ok",
        "é",
    ]
    near = 0
    for _ in range(300):
        texts = [" ".join(rng.choices(words, k=rng.randint(0, 60))) for _ in range(4)]
        texts.append(rng.choice(["", "a", "abcd", "abcde", " x "]))
        texts.append(texts[0].replace("the", "teh", rng.randint(0, 3)) + " !")
        grams = [module._shingles(t) for t in texts]
        for a in grams:
            for b in grams:
                assert module._same(a, b) == plain(a, b)
                near += a != b and plain(a, b)
    assert near > 50  # near copies were among the pairs


def test_a_source_as_a_dict_has_every_field() -> None:
    """Sources reach JSON (SSE, /v1, the database) through `as_dict`, a shallow copy."""
    from dataclasses import asdict

    full = Source(3, "a/b.md", "B", "de", 0.81, "Text.", 4, "Intro", 2, 0.77, "https://x.test/b")
    assert full.as_dict() == asdict(full)
    assert list(full.as_dict()) == list(asdict(full))  # the same order in the JSON
