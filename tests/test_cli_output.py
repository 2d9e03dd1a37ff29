"""What the terminal shows: search's [de] tags and file names literally, chat's answer as markdown.
The real typer app in-process, with the search and the chain replaced by fixed results."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.chat.types import ChatResult, Done, Source, Token, Turn
from app.search import Hit

ANSWER = (
    "# Akku\n\nDer Akku hält **acht Jahre** [1].\n\n- laden bei 20 %\n- nicht unter 0 °C\n\n"
    "Mehr unter [Hilfe](https://example.com/hilfe)."
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KBCHAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")


def invoke(*args: str, stdin: str | None = None) -> str:
    from app.cli import app

    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_search_prints_language_tags_and_names_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    hit = Hit("de/[entwurf] akku.md", "Akku", "de", 0.9123, "Der Akku [1] hält [b]lange[/b].", 0)
    monkeypatch.setattr("app.search.search", lambda *a, **kw: [hit])
    output = invoke("search", "wie lange hält der Akku")
    assert "1. de/[entwurf] akku.md  [de]  score 0.9123" in output, output
    assert "Der Akku [1] hält [b]lange[/b]." in output


class FakeChain:
    mode = "llm"

    def __init__(self) -> None:
        self.histories: list[list[Turn]] = []

    def stream(self, question: str, history: list[Turn]) -> Iterator[Any]:
        self.histories.append(list(history))
        for piece in ANSWER.split(" "):
            yield Token(piece + " ")
        source = Source(1, "de/[akku].md", "Akku", "de", 0.81, "Der Akku hält acht Jahre.")
        yield Done(ChatResult(ANSWER, [source], "de", "llm", True, cited=[1]))


def test_chat_renders_markdown_and_keeps_history(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = FakeChain()
    monkeypatch.setattr("app.cli._chain", lambda collection: chain)
    output = invoke("chat", stdin="Wie lange hält der Akku?\nUnd im Winter?\n/quit\n")
    assert "**" not in output and "# Akku" not in output, output
    assert output.count("acht Jahre [1]") == 2  # each answer once, not once per token
    assert "• laden bei 20 %" in output
    assert "Hilfe (https://example.com/hilfe)" in output  # the real target, visible
    assert "*[1] de/[akku].md  [de]  score 0.8100" in output  # sources stay literal
    assert [len(h) for h in chain.histories] == [0, 2]
    assert chain.histories[1][1].content == ANSWER


def test_version() -> None:
    from app import __version__

    assert invoke("--version") == f"kbchat {__version__}\n"


def test_search_and_ask_print_a_source_address_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://docs.example.com/akku?x=[b]1[/b]"  # brackets printed literally, not as markup
    hit = Hit("akku.md", "Akku", "de", 0.9, "Der Akku hält.", 0, url=url)
    monkeypatch.setattr("app.search.search", lambda *a, **kw: [hit])
    assert f"  score 0.9000\n   {url}\n   Der Akku hält." in invoke("search", "Akku")

    class Chain:
        def stream(self, question: str) -> Iterator[Any]:
            sources = [
                Source(1, "akku.md", "Akku", "de", 0.8, "Der Akku hält.", url=url),
                Source(2, "b.md", "B", "de", 0.7, "B."),
            ]
            yield Done(ChatResult("Acht Jahre [1].", sources, "de", "llm", True, cited=[1]))

    monkeypatch.setattr("app.cli._chain", lambda collection: Chain())
    output = invoke("ask", "Wie lange hält der Akku?")
    assert f"*[1] akku.md  [de]  score 0.8000\n     {url}\n [2] b.md" in output, output
