"""The one chat chain behind the CLI, the HTTP API and the widget (LangChain LCEL).

1. A follow-up becomes a standalone question for retrieval (an LLM condense step, or without an
   LLM the recent user turns together); the user's own words and language go to the answer step.
2. Retrieval across languages, with the embedding profile's query form and a relevance cut-off.
3. Numbered sources as delimited data; the LLM answers in the question's language, citing [n],
   streaming. Without an LLM: the best passages, quoted with their numbers, under a short note.
4. LLM faults (after the client's own retries) become a short localised message plus the
   passages found; nothing raises to the caller.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate

from app.chat.types import ChatResult, Done, Source, Token, Turn
from ingestion.language import detect_language

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

    from app.chat.prompts import PromptSet
    from app.chat.retriever import Retriever

log = logging.getLogger(__name__)
_CITATION = re.compile(r"\[(\d{1,3})\]")
EXCERPT_CHARS = 700


def question_language(
    question: str, history: Sequence[Turn], candidates: frozenset[str] | None = None
) -> str:
    """The question's language; a too-short question inherits the conversation's."""
    language = detect_language(question, candidates)
    if language == "und":
        for turn in reversed(history):
            if turn.role == "user":
                earlier = detect_language(turn.content, candidates)
                if earlier != "und":
                    return earlier
    return language


def format_context(sources: Sequence[Source]) -> str:
    """Passages as numbered, delimited data; a passage (text or metadata) cannot close its tag."""
    blocks = []
    for s in sources:
        text = re.sub(r"</?\s*sources?\b", "[tag removed]", s.text, flags=re.IGNORECASE)
        page = f' page="{s.page}"' if s.page else ""
        file, title, language = (html.escape(v) for v in (s.source, s.title, s.language))
        blocks.append(
            f'<source id="{s.number}" file="{file}" title="{title}" '
            f'language="{language}"{page}>\n{text}\n</source>'
        )
    return "\n".join(blocks)


def cited_numbers(answer: str, sources: Sequence[Source]) -> list[int]:
    known = {s.number for s in sources}
    return sorted({n for n in map(int, _CITATION.findall(answer)) if n in known})


class ChatChain:
    """Constructed with its retriever, prompts and (optional) chat model; holds no global."""

    def __init__(
        self,
        retriever: Retriever,
        prompts: PromptSet,
        llm: BaseChatModel | None,
        *,
        history_turns: int = 6,
    ) -> None:
        self.retriever = retriever
        self.prompts = prompts
        self.llm = llm
        self.history_turns = history_turns
        self._answer: Runnable | None = None
        self._condense: Runnable | None = None
        if llm is not None:
            answer_prompt = ChatPromptTemplate.from_messages(
                [
                    ("system", prompts.system),
                    MessagesPlaceholder("history"),
                    ("human", prompts.answer),
                ]
            )
            self._answer = answer_prompt | llm | StrOutputParser()
            self._condense = (
                PromptTemplate.from_template(prompts.condense) | llm | StrOutputParser()
            )

    @property
    def mode(self) -> str:
        return "generative" if self.llm is not None else "extractive"

    def invoke(self, question: str, history: Sequence[Turn] = ()) -> ChatResult:
        for event in self.stream(question, history):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("stream ended without a result")  # pragma: no cover

    def stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[Token | Done]:
        """Tokens as they arrive, then one Done with the structured result."""
        history = list(history)[-2 * self.history_turns :] if self.history_turns else []
        language = question_language(question, history, self.prompts.languages)
        query = self.standalone_question(question, history)
        started = time.perf_counter()
        sources = self.retriever.retrieve(query)
        result = ChatResult("", sources, language, "extractive", bool(sources), query)
        result.retrieval_ms = round((time.perf_counter() - started) * 1000, 2)
        if self._answer is None:
            result.answer = self._extractive(language, sources, "no_llm")
            yield Token(result.answer)
            yield Done(result)
            return
        result.mode = "generative"
        if not sources:  # nothing relevant: say so without spending an LLM call
            result.answer = self.prompts.message(language, "no_answer")
            yield Token(result.answer)
            yield Done(result)
            return
        parts: list[str] = []
        try:
            for piece in self._answer.stream(
                {
                    "context": format_context(sources),
                    "question": question,
                    "language_name": self.prompts.language_name(language),
                    "history": _messages(history),
                }
            ):
                parts.append(piece)
                yield Token(piece)
        except Exception as exc:  # every LLM fault, after the client's retries
            log.warning("LLM call failed: %s: %s", type(exc).__name__, exc)
            result.error = f"{type(exc).__name__}: {exc}"
            fallback = self._extractive(language, sources, "llm_error")
            fallback = f"\n\n{fallback}" if parts else fallback
            parts.append(fallback)
            yield Token(fallback)
        result.answer = "".join(parts)
        result.cited = cited_numbers(result.answer, sources)
        yield Done(result)

    def standalone_question(self, question: str, history: Sequence[Turn]) -> str:
        """What retrieval searches for; never what the answer step is asked."""
        earlier = [t.content for t in history if t.role == "user"]
        if not earlier:
            return question
        if self._condense is not None:
            transcript = "\n".join(f"{t.role}: {t.content}" for t in history)
            try:
                condensed = str(
                    self._condense.invoke({"history": transcript, "question": question})
                )
                if condensed.strip():
                    return condensed.strip()
            except Exception as exc:  # fall back to the turns themselves
                log.warning("condense step failed: %s: %s", type(exc).__name__, exc)
        return "\n".join([*earlier[-2:], question])

    def _extractive(self, language: str, sources: Sequence[Source], note_key: str) -> str:
        if not sources:
            key = "no_answer" if note_key == "no_llm" else "llm_error_no_sources"
            return self.prompts.message(language, key)
        lines = [self.prompts.message(language, note_key), ""]
        for s in sources:
            excerpt = s.text if len(s.text) <= EXCERPT_CHARS else s.text[:EXCERPT_CHARS] + " …"
            where = s.title if s.title and s.title != s.source else ""
            where = f"{where} ({s.source})" if where else s.source
            lines.append(f"[{s.number}] {excerpt.strip()}\n    — {where}")
        return "\n".join(lines)


def _messages(history: Sequence[Turn]) -> list[BaseMessage]:
    return [HumanMessage(t.content) if t.role == "user" else AIMessage(t.content) for t in history]
