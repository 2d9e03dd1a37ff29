"""The chat chain end to end: real E5, real Chroma, real HTTP to an OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.types import Done, Token
from tests.openai_stub import OpenAIStub, condensing

pytestmark = pytest.mark.integration

DOCS = {
    "en/monorail.md": "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a "
    "suspended monorail in Wuppertal, Germany. It opened in 1901 and runs above the river "
    "Wupper for 13.3 kilometres.",
    "en/volcano.md": "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. Its "
    "eruption in the year 79 buried the Roman cities of Pompeii and Herculaneum under ash.",
    "en/tea.txt": "Longjing tea is a green tea grown near the West Lake in Hangzhou, Zhejiang "
    "province, China. It is pan-roasted by hand.",
    "de/kaese.md": "# Emmentaler\n\nEmmentaler ist ein Hartkäse aus Kuhmilch aus dem "
    "Emmental in der Schweiz. Er ist bekannt für seine großen Löcher.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Path:
    """Data dir with collection 'chat' holding DOCS, ingested once for the module."""
    from app.ingest import ingest_folder
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("chat")
    for rel, text in DOCS.items():
        (base / "kb" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "kb" / rel).write_text(text, encoding="utf-8")
    settings = load_settings(data_dir=base / "data")
    report = ingest_folder(settings, base / "kb", "chat", embedder=e5)
    assert len(report.added) == len(DOCS)
    return base / "data"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


def chain_for(kb: Path, e5: Any, **settings: Any) -> Any:
    from app.chat.factory import build_chat_chain
    from app.settings import load_settings

    return build_chat_chain(load_settings(data_dir=kb, **settings), "chat", embedder=e5)


def llm_settings(stub: OpenAIStub, **llm: Any) -> dict[str, Any]:
    return {
        "openai_base_url": stub.base_url,
        "llm": {"model": "stub-model", "timeout": 5, "max_retries": 1, **llm},
    }


def test_spanish_question_gets_the_english_passage_and_cited_sources(
    kb: Path, e5: Any, stub: OpenAIStub
) -> None:
    stub.reply = "La erupción del año 79 sepultó Pompeya y Herculano [1]."
    chain = chain_for(kb, e5, **llm_settings(stub))
    events = list(chain.stream("¿Qué ciudades romanas sepultó el Vesubio?"))
    tokens = [e.text for e in events if isinstance(e, Token)]
    result = events[-1].result
    assert isinstance(events[-1], Done) and len(tokens) > 3  # really streamed
    assert "".join(tokens) == result.answer == stub.reply
    assert result.mode == "generative" and result.grounded and result.language == "es"
    assert result.sources[0].source == "en/volcano.md"
    assert result.cited == [1]
    sent = stub.requests[-1]
    assert sent["stream"] is True and sent["model"] == "stub-model"
    prompt = stub.all_prompt_text()
    assert "buried the Roman cities of Pompeii" in prompt  # the English passage reached the LLM
    assert '<source id="1" file="en/volcano.md"' in prompt
    assert "¿Qué ciudades romanas sepultó el Vesubio?" in stub.last_user_message()
    assert "Spanish (Español)" in prompt


def test_follow_up_is_condensed_for_retrieval(kb: Path, e5: Any, stub: OpenAIStub) -> None:
    from app.chat.types import Turn

    stub.reply = condensing(
        "It opened in 1901 [1].", "When did the Wuppertal Suspension Railway open?"
    )
    chain = chain_for(kb, e5, **llm_settings(stub))
    history = [
        Turn("user", "What is the Wuppertal Suspension Railway?"),
        Turn("assistant", "A suspended monorail in Wuppertal [1]."),
    ]
    result = chain.invoke("and when did it open?", history)
    assert len(stub.requests) == 2  # condense, then answer
    assert "and when did it open?" in stub.all_prompt_text(0)
    assert "What is the Wuppertal Suspension Railway?" in stub.all_prompt_text(0)
    assert result.retrieval_query == "When did the Wuppertal Suspension Railway open?"
    assert result.sources[0].source == "en/monorail.md"
    assert stub.last_user_message().count("and when did it open?") == 1  # original wording
    assert result.answer == "It opened in 1901 [1]." and result.cited == [1]


def test_no_answer_in_the_knowledge_base(kb: Path, e5: Any, stub: OpenAIStub) -> None:
    # A cut-off above every score stands for "nothing relevant" whatever the model's scores.
    chain = chain_for(kb, e5, retrieval={"min_score": 0.95}, **llm_settings(stub))
    result = chain.invoke("How do I reset the password of my wifi router?")
    assert not result.grounded and result.sources == []
    assert result.answer == chain.prompts.message("en", "no_answer")
    assert stub.requests == []  # nothing relevant: no LLM call spent


def test_extractive_mode_without_llm(kb: Path, e5: Any) -> None:
    chain = chain_for(kb, e5)
    assert chain.mode == "extractive"
    result = chain.invoke("Woher kommt der Longjing-Tee?")
    assert result.mode == "extractive" and result.language == "de"
    assert result.answer.startswith(chain.prompts.message("de", "no_llm"))
    assert "[1]" in result.answer and "West Lake" in result.answer
    assert result.sources[0].source == "en/tea.txt"


ETNA = (
    "Mount Etna is an active stratovolcano on the east coast of Sicily, Italy, between the "
    "cities of Messina and Catania. It lies above the convergent plate margin between the "
    "African Plate and the Eurasian Plate. It is one of the tallest active volcanoes in Europe. "
    "Its height changes after each eruption; in 2021 it was measured at 3,357 metres. "
    "The volcano covers an area of 1,190 square kilometres with a basal circumference of 140 "
    "kilometres. Farmers grow grapes, olives and citrus on its fertile lower slopes. "
    "A cable car and a road bring visitors up to 2,500 metres on the southern flank. "
    "UNESCO listed Mount Etna as a World Heritage Site in June 2013."
)


def test_extractive_answer_is_the_answering_sentence_of_a_long_passage(
    tmp_path: Path, e5: Any
) -> None:
    from app.ingest import ingest_folder
    from app.settings import load_settings

    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "etna.txt").write_text(ETNA, encoding="utf-8")
    (tmp_path / "kb" / "tea.txt").write_text(DOCS["en/tea.txt"], encoding="utf-8")
    settings = load_settings(data_dir=tmp_path / "data")
    ingest_folder(settings, tmp_path / "kb", "chat", embedder=e5)
    chain = chain_for(tmp_path / "data", e5)
    result = chain.invoke("Wann wurde der Ätna zum UNESCO-Welterbe erklärt?")
    short = result.answer.removeprefix(chain.prompts.message("de", "no_llm") + "\n\n")
    assert short.startswith("UNESCO listed Mount Etna as a World Heritage Site in June 2013.")
    assert short.endswith("[1]") and len(short) <= 600
    assert len(short) < len(ETNA) / 2  # a sentence or two, not the passage
    assert result.sources[0].source == "etna.txt" and result.sources[0].text.strip() == ETNA
    assert result.cited[0] == 1


FAULT_CODES = {
    "500": "llm_unavailable",
    "429": "llm_rate_limited",
    "hang": "llm_timeout",
    "down": "llm_unavailable",
}


@pytest.mark.parametrize("mode", list(FAULT_CODES))
def test_llm_faults_give_a_localised_message_and_the_sources(
    kb: Path, e5: Any, stub: OpenAIStub, mode: str
) -> None:
    stub.hang_seconds = 20
    chain = chain_for(kb, e5, **llm_settings(stub, timeout=1.0, max_retries=1))
    stub.mode = mode
    started = time.monotonic()
    result = chain.invoke("¿Cuándo abrió el monorraíl suspendido de Wuppertal?")
    assert time.monotonic() - started < 15
    assert result.error == FAULT_CODES[mode]  # a stable code, not the upstream's words
    assert result.answer.startswith(chain.prompts.message("es", "llm_error"))
    assert "[1]" in result.answer and result.sources[0].source == "en/monorail.md"
    if mode != "down":
        assert len(stub.requests) == 2  # the first try and one retry with backoff


def test_cut_stream_through_the_real_client_is_incomplete(
    kb: Path, e5: Any, stub: OpenAIStub
) -> None:
    stub.reply = "Der Emmentaler kommt aus dem Emmental in der Schweiz [1]."
    stub.mode, stub.cut_after = "cut", 3
    chain = chain_for(kb, e5, **llm_settings(stub, max_retries=2))
    result = chain.invoke("Where does Emmental cheese come from?")
    message = chain.prompts.message("en", "llm_error")
    assert result.answer.startswith("Der Emmentaler kommt \n\n" + message)
    assert result.error == "llm_incomplete" and result.finish_reason == "length"
    assert len(stub.requests) == 1  # text had been shown: not retried


def test_deadline_bounds_a_hung_llm_not_timeout_times_retries(
    kb: Path, e5: Any, stub: OpenAIStub
) -> None:
    stub.mode, stub.hang_seconds = "hang", 60
    chain = chain_for(kb, e5, **llm_settings(stub, timeout=30, max_retries=3, deadline=1.5))
    started = time.monotonic()
    result = chain.invoke("Where does Emmental cheese come from?")
    assert time.monotonic() - started < 1.5 + 2  # today: 4 x 30 s
    assert result.error == "llm_timeout"
    assert result.answer.startswith(chain.prompts.message("en", "llm_error"))
    assert len(stub.requests) == 1  # no retry fits in what the deadline left


def test_retry_then_success(kb: Path, e5: Any, stub: OpenAIStub) -> None:
    stub.mode, stub.fail_times = "500", 1
    stub.reply = "Emmentaler kommt aus der Schweiz [1]."
    chain = chain_for(kb, e5, **llm_settings(stub, max_retries=2))
    result = chain.invoke("Where does Emmental cheese come from?")
    assert result.error is None and result.answer == stub.reply
    assert result.sources[0].source == "de/kaese.md"
    assert len(stub.requests) == 2


def test_ask_cli_json_and_faults_never_crash(kb: Path, cli: Any, stub: OpenAIStub) -> None:
    env = {
        "KBCHAT_DATA_DIR": str(kb),
        "OPENAI_BASE_URL": stub.base_url,
        "KBCHAT_LLM_MODEL": "stub-model",
        "KBCHAT_LLM_MAX_RETRIES": "0",
    }
    stub.reply = "Vesuvius [1]."
    result = cli.json("ask", "Which volcano buried Pompeii?", "-c", "chat", **env)
    assert result["answer"] == "Vesuvius [1]." and result["mode"] == "generative"
    assert result["sources"][0]["source"] == "en/volcano.md" and result["cited"] == [1]
    assert set(result) >= {"answer", "sources", "language", "mode", "grounded"}
    stub.mode = "500"
    proc = cli.run("ask", "Which volcano buried Pompeii?", "-c", "chat", **env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "[1]" in proc.stdout and "en/volcano.md" in proc.stdout
    streamed = cli.run(
        "ask", "Which volcano buried Pompeii?", "-c", "chat", KBCHAT_DATA_DIR=str(kb)
    )
    assert "en/volcano.md" in streamed.stdout  # extractive, no LLM configured


def test_eval_cli_on_a_queries_file(kb: Path, cli: Any, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    rows = [
        {
            "question": "¿Cuándo abrió el monorraíl de Wuppertal?",
            "source": "en/monorail.md",
            "lang": "es",
        },
        {"question": "Welche Städte zerstörte der Vesuv?", "paragraph_id": "volcano", "lang": "de"},
        {"question": "Where is Emmental cheese made?", "source": "de/kaese.md", "lang": "en"},
    ]
    queries.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    report = cli.json("eval", str(queries), "-c", "chat", KBCHAT_DATA_DIR=str(kb))
    assert report["queries"] == 3
    assert report["overall"]["recall@1"] == 1.0 and report["overall"]["mrr@10"] == 1.0
    assert set(report["by_language"]) == {"es", "de", "en"}
    table = cli.run("eval", str(queries), "-c", "chat", KBCHAT_DATA_DIR=str(kb)).stdout
    assert re.search(r"all\s+.*3", table)


def test_chat_cli_keeps_history(kb: Path, cli: Any, stub: OpenAIStub) -> None:
    stub.reply = condensing("Answer [1].", "When did the Wuppertal Suspension Railway open?")
    env = {
        "KBCHAT_DATA_DIR": str(kb),
        "OPENAI_BASE_URL": stub.base_url,
        "KBCHAT_LLM_MODEL": "stub-model",
    }
    proc = cli.run(
        "chat",
        "-c",
        "chat",
        stdin="What is the Wuppertal Suspension Railway?\nand when did it open?\n/quit\n",
        **env,
    )
    assert proc.stdout.count("Answer [1].") == 2
    assert proc.stdout.count("en/monorail.md") >= 2
    assert len(stub.requests) == 3  # answer; then condense (with the history) and answer
    assert "What is the Wuppertal Suspension Railway?" in stub.all_prompt_text(1)
    assert "Traceback" not in proc.stderr
