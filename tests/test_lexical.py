"""The lexical bonus (app/lexical.py): BM25 over the model's SentencePiece tokens, scaled so
the best-matching candidate gains exactly `weight`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from app.lexical import LexicalBonus


@pytest.fixture(scope="module")
def tokenizer(e5_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(e5_model_dir / "tokenizer.json"))


TEXTS = [
    "Die Firma wurde 1998 in Graz gegründet und baut Ladestationen.",
    "The company was founded in 2004 by two engineers.",
    "Der Akku lädt in vier Stunden vollständig auf.",
]


def test_exact_names_and_numbers_win_the_bonus(tokenizer: Tokenizer) -> None:
    bonus = LexicalBonus(tokenizer, 0.02).scores("Was geschah 1998 in Graz?", TEXTS)
    assert bonus.argmax() == 0
    assert bonus[0] == pytest.approx(0.02)  # normalised by the query's best
    assert bonus[1] < bonus[0] / 2 and bonus[2] < bonus[0] / 2  # only "in", "was" shared


def test_tokens_are_case_blind_and_drop_punctuation(tokenizer: Tokenizer) -> None:
    lexical = LexicalBonus(tokenizer, 0.01)
    assert lexical.tokens("GRAZ!") == lexical.tokens("graz")
    assert lexical.tokens("?!, .") == []


def test_no_overlap_and_no_weight_give_no_bonus(tokenizer: Tokenizer) -> None:
    assert not LexicalBonus(tokenizer, 0.02).scores("zzzq", TEXTS).any()
    assert not LexicalBonus(tokenizer, 0.0).scores("Graz", TEXTS).any()
    assert np.array_equal(LexicalBonus(tokenizer, 0.02).scores("Graz", []), np.zeros(0))


def test_scripts_without_spaces_are_split(tokenizer: Tokenizer) -> None:
    texts = ["东京大学成立于1877年。", "这台设备需要四个小时充电。"]
    bonus = LexicalBonus(tokenizer, 0.02).scores("东京大学是什么时候成立的？", texts)
    assert bonus[0] > bonus[1]


def test_bm25_agrees_with_the_bm25s_library(tokenizer: Tokenizer) -> None:
    import bm25s

    lexical = LexicalBonus(tokenizer, 0.02)
    texts = [*TEXTS, "Graz Graz Graz liegt in der Steiermark.", "1998 war ein Jahr."]
    for query in ("Was geschah 1998 in Graz?", "Wann wurde die Firma gegründet?", "akku"):
        index = bm25s.BM25()
        index.index([lexical.tokens(t) for t in texts], show_progress=False)
        expected = index.get_scores(lexical.tokens(query))
        assert np.allclose(lexical.bm25(query, texts), expected, atol=1e-5)
