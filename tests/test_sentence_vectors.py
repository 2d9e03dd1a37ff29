"""Sentence vectors: packed with their chunk (ingestion/sentences.py) and ranked by the best
sentence (app/chat/ranking.py). Fast tests with hand-made vectors; the real model's are in
tests/test_sentence_vectors_model.py."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from app.chat.ranking import Ranker
from ingestion.sentences import (
    MAX_SENTENCES,
    MIN_SENTENCE_TOKENS,
    pack,
    sentence_texts,
    token_counter,
    unpack,
)
from tests.fakes import real_tokenizer


def _tokens(text: str) -> int:
    return token_counter(real_tokenizer())(text)


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_pack_round_trip_keeps_float16_precision() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    back = unpack(pack(vectors), 384)
    assert back is not None and back.shape == (5, 384)
    assert np.allclose(back, vectors, atol=1e-3)
    assert len(pack(vectors)) < 5 * 384 * 3  # float16: about 2.7 characters a number


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        3,
        "not base64 at all!",
        base64.b64encode(b"\x01").decode(),  # shorter than the header
        pack(np.ones((2, 8))),  # another dimension (another model)
        base64.b64encode(np.array([384], "<u2").tobytes() + b"\x00" * 5).decode(),  # ragged
        base64.b64encode(np.array([384], "<u2").tobytes()).decode(),  # no rows
    ],
)
def test_unpack_refuses_anything_else(value: object) -> None:
    assert unpack(value, 384) is None


def test_only_chunks_of_several_sentences_get_sentence_vectors() -> None:
    long = "This sentence is long enough to stand on its own as a piece of the chunk, surely."
    assert _tokens(long) >= MIN_SENTENCE_TOKENS
    assert sentence_texts(long, "en", _tokens) == []  # one piece: the chunk's own vector says it
    assert sentence_texts(f"{long} {long}", "en", _tokens) == [long, long]
    many = " ".join([long] * (MAX_SENTENCES + 10))
    assert len(sentence_texts(many, "en", _tokens)) == MAX_SENTENCES


def test_short_lines_join_the_next_ones() -> None:
    lines = "- **Type:** Lithium-ion\n- **Capacity:** 5.2 Ah\n"
    first = "This sentence is long enough to stand on its own as a piece of the chunk, surely."
    second = "And so is this one, which talks about something else entirely, at some length."
    pieces = sentence_texts(f"{lines}{first} {second} Short tail.", "en", _tokens)
    assert pieces == [
        f"**Type:** Lithium-ion **Capacity:** 5.2 Ah {first}",
        f"{second} Short tail.",  # a short tail joins the piece before it
    ]


def test_short_is_counted_in_tokens_so_every_script_gets_its_sentences() -> None:
    # The same four sentences (XQuAD dev's kind of text) in English and in Chinese. Counted in
    # characters (80), the Chinese chunk was one piece (no sentence vectors) while the English
    # one had four: Chinese says in 25 characters what English says in 70.
    english = (
        "The Normans were descended from Norse raiders and pirates from Denmark and Norway. "
        "Their leader Rollo agreed to swear fealty to King Charles III of West Francia. "
        "Over the following generations they gradually adopted the Frankish language and the "
        "faith. Their distinct cultural and ethnic identity emerged in the first half of the "
        "tenth century."
    )
    chinese = (
        "诺曼人是来自丹麦和挪威的北欧海盗和掠夺者的后裔。"
        "他们的首领罗洛同意向西法兰克国王查理三世宣誓效忠。"
        "在随后的几代人中，他们逐渐接受了法兰克人的语言和基督教信仰。"
        "他们独特的文化和民族认同最终形成于公元十世纪的上半叶。"
    )
    assert len(chinese) < 4 * 80  # every Chinese sentence is under 80 characters
    assert len(sentence_texts(english, "en", _tokens)) == 4
    assert len(sentence_texts(chinese, "zh", _tokens)) == 4


def test_the_answering_sentence_lifts_its_chunk() -> None:
    query = _unit(1, 0, 0)
    # Chunk 0 is on the topic as a whole; chunk 1 is mostly about something else, but one of
    # its sentences is the answer.
    vectors = np.stack([_unit(0.7, 0.7, 0), _unit(0.6, 0, 0.8)])
    sentences = [None, np.stack([_unit(0, 0, 1), _unit(0.99, 0, 0.14)])]
    raw = vectors @ query
    common = {"raw": raw, "texts": ["a", "b"], "languages": ["en", "en"], "vectors": vectors}
    plain = Ranker().scores("q", query, "en", **common)
    assert np.argmax(plain) == 0
    ranked = Ranker(sentence_weight=1.0).scores("q", query, "en", sentences=sentences, **common)
    assert np.argmax(ranked) == 1
    # (cosine + best sentence) / 2; a chunk without sentence vectors keeps its own cosine.
    assert ranked == pytest.approx([raw[0], (raw[1] + 0.99 / np.linalg.norm([0.99, 0.14])) / 2])
    assert Ranker(sentence_weight=1.0).scores(
        "q", query, "en", sentences=[None, None], **common
    ) == pytest.approx(raw)


def test_relevance_with_sentences_is_the_mean_of_chunk_and_best_sentence() -> None:
    from app.chat.retriever import _with_sentences, default_min_score

    query = _unit(1, 0, 0)
    raw = np.array([0.8, 0.7])
    sentences = [np.stack([_unit(0.9, 0.43, 0), _unit(0.5, 0.86, 0)]), None]
    relevance = _with_sentences(raw, sentences, list(query))
    assert relevance == pytest.approx([(0.8 + _unit(0.9, 0.43, 0)[0]) / 2, 0.7])
    model = "intfloat/multilingual-e5-small"
    # Each score has its own calibrated cut-off; an unknown model has none.
    assert default_min_score(model, sentences=True) != default_min_score(model)
    assert default_min_score("someone/else", sentences=True) is None
