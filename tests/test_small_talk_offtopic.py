"""Small talk and off-topic questions, end to end on examples/kb: real E5, real Chroma.

Issue 8: "Hello!", "hola", "Thanks, bye" and "What is the capital of Peru?" each came back
grounded with up to five sources. Small talk gets a short canned reply in its language, with
no sources; an off-topic question gets the honest "not in the knowledge base".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.types import ChatResult
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
MESSAGES = json.loads((REPO / "prompts" / "messages.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Path:
    """Data dir with collection "handbook" holding examples/kb, ingested once for the module."""
    from app.ingest import ingest_folder
    from app.settings import load_settings

    data = tmp_path_factory.mktemp("offtopic") / "data"
    ingest_folder(load_settings(data_dir=data), REPO / "examples" / "kb", "handbook", embedder=e5)
    return data


@pytest.fixture(scope="module")
def chain(kb: Path, e5: Any) -> Any:
    """The chain as `kbchat ask` builds it, without an LLM."""
    from app.chat.factory import build_chat_chain
    from app.settings import load_settings

    return build_chat_chain(load_settings(data_dir=kb), "handbook", embedder=e5, llm=None)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


SMALL_TALK = [  # (turn, reply language, kind)
    ("Hello!", "en", "hello"),
    ("hola", "es", "hello"),
    ("Thanks, bye", "en", "bye"),
    ("Guten Morgen!", "de", "hello"),
    ("Danke schön", "de", "bye"),
    ("merci bien", "fr", "bye"),
    ("Salut, ça va ?", "fr", "hello"),
    ("你好", "zh", "hello"),
    ("谢谢你的帮助", "zh", "bye"),
    ("こんにちは", "ja", "hello"),
    ("مرحبا", "ar", "hello"),
    ("Who are you?", "en", "hello"),
]


@pytest.mark.parametrize(("turn", "language", "kind"), SMALL_TALK)
def test_small_talk_gets_a_canned_reply_in_its_language_without_sources(
    chain: Any, turn: str, language: str, kind: str
) -> None:
    result: ChatResult = chain.invoke(turn)
    assert result.small_talk
    assert result.sources == [] and not result.grounded
    assert result.language == language
    assert result.answer == MESSAGES[language][f"small_talk_{kind}"]


def test_small_talk_spends_no_llm_call(kb: Path, e5: Any, stub: OpenAIStub) -> None:
    from app.chat.factory import build_chat_chain
    from app.settings import load_settings

    settings = load_settings(
        data_dir=kb,
        openai_base_url=stub.base_url,
        llm={"model": "stub-model", "timeout": 5, "max_retries": 0},
    )
    result = build_chat_chain(settings, "handbook", embedder=e5).invoke("Thanks, bye")
    assert result.small_talk and result.sources == [] and stub.requests == []
    assert result.answer == MESSAGES["en"]["small_talk_bye"]


GREETED_QUESTIONS = [  # a real question behind a greeting is a question: (turn, expected file)
    ("Hello, how many years of warranty does the battery have?", "en/warranty.md"),
    ("Hola, ¿cuántos años de garantía tiene la batería?", "en/warranty.md"),
    ("Hallo! Wann wurde das Unternehmen gegründet?", "en/company-history.txt"),
    ("Bonjour, que faire si les lames ne s'arrêtent pas ?", "fr/securite.md"),
    ("你好，怎么安装固件？", "zh/app-guide.txt"),
]


@pytest.mark.parametrize(("turn", "expected"), GREETED_QUESTIONS)
def test_a_question_behind_a_greeting_still_retrieves(chain: Any, turn: str, expected: str) -> None:
    result = chain.invoke(turn)
    assert not result.small_talk and result.grounded
    assert expected in [s.source for s in result.sources]


_STILL_PASSES = pytest.mark.xfail(
    strict=True,
    reason="known limit (docs/calibration.md): its relevance score against examples/kb (the mean"
    " of a chunk's cosine and its best sentence's) is above the 0.751 cut-off, and no calibrated"
    " margin separates it from answerable questions yet",
)
OFF_TOPIC = [
    ("What is the capital of Peru?", "en"),
    ("Was ist die Hauptstadt von Peru?", "de"),
    ("Who won the football World Cup in 1998?", "en"),
    ("Wer hat die Fußballweltmeisterschaft 1998 gewonnen?", "de"),
    ("Кто выиграл чемпионат мира по футболу 1998 года?", "ru"),
    pytest.param("¿Cuál es la capital de Perú?", "es", marks=_STILL_PASSES),
    pytest.param("Quelle est la capitale du Pérou ?", "fr", marks=_STILL_PASSES),
    pytest.param("秘鲁的首都是哪里？", "zh", marks=_STILL_PASSES),
    ("ペルーの首都はどこですか？", "ja"),  # turned away since the cut-off counts the best sentence
]


@pytest.mark.parametrize(("turn", "language"), OFF_TOPIC)
def test_an_off_topic_question_is_not_in_the_knowledge_base(
    chain: Any, turn: str, language: str
) -> None:
    result = chain.invoke(turn)
    assert not result.small_talk
    assert result.sources == [] and not result.grounded
    assert result.answer == MESSAGES[language]["no_answer"]


@pytest.mark.parametrize(
    "turn",
    ["🙂🙂🙂", "👋", "?!", "   ", "Mowbot " * 1500, "x" * 10_000, "\u200b\u200b", "ок"],
    ids=["emoji", "wave", "punctuation", "blank", "10k-words", "10k-chars", "zero-width", "ok"],
)
def test_odd_input_gets_an_answer_not_a_crash(chain: Any, turn: str) -> None:
    result = chain.invoke(turn)
    assert isinstance(result.answer, str) and result.answer
    assert result.small_talk or result.sources == [] or result.grounded


def test_a_relevance_margin_turns_away_a_generic_question_and_keeps_a_real_one(
    kb: Path, e5: Any
) -> None:
    """The opt-in margin over the question's background (app/chat/relevance.py): "What's the
    weather tomorrow?" scores 0.81 against examples/kb, above the cut-off, but barely above its
    similarity to generic text; the warranty question stands far above its own."""
    from app.chat.factory import build_chat_chain
    from app.settings import load_settings

    settings = load_settings(data_dir=kb, retrieval={"min_margin": 0.03})
    chain = build_chat_chain(settings, "handbook", embedder=e5, llm=None)
    assert chain.invoke("What's the weather tomorrow?").sources == []
    kept = chain.invoke("How long is the battery warranty?").sources
    assert kept and kept[0].source == "en/warranty.md"
    plain = build_chat_chain(load_settings(data_dir=kb), "handbook", embedder=e5, llm=None)
    assert plain.invoke("What's the weather tomorrow?").sources  # the cut-off alone keeps it
