"""The one chat chain behind the CLI, the HTTP API and the widget (LangChain LCEL).

1. A follow-up becomes a standalone question for retrieval (an LLM condense step, or without an
   LLM the recent user turns together); the user's own words and language go to the answer step.
2. Retrieval across languages, with the embedding profile's query form and a relevance cut-off.
3. Numbered sources (deduplicated, `app.chat.sources`) as delimited data; the LLM answers in the
   question's language, citing [n], streaming. Without an LLM: the best one to three sentences of
   the best passages with their [n] (`app.chat.extractive`), under a short note. Either way the
   result lists the cited sources first, numbers unchanged.
4. LLM faults become a short localised note plus that short answer (after any partial text);
   nothing raises to the caller. The result carries a stable code (`app.chat.types.LLM_ERRORS`);
   the upstream detail goes to the log only. A stream that ends without a finish reason (a cut
   connection) is a fault too, never a complete answer.
5. The whole answer, retries included, ends by one deadline: each attempt's timeout is what is
   left of it, retries happen only before the first token, and the stream is checked between
   tokens. A hung LLM therefore costs a user at most the deadline, not timeout x retries.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.exceptions import (
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate

from app.chat.extractive import SentencePicker
from app.chat.fusion import retrieve_fused
from app.chat.sources import cited_first, distinct_sources
from app.chat.translate import parse_variants, prompt_inputs, queries
from app.chat.types import (
    AnswerOptions,
    ChatResult,
    Done,
    LLMError,
    Mode,
    Source,
    Token,
    Turn,
    Usage,
)
from ingestion.language import detect_language

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable, RunnableConfig

    from app.chat.prompts import PromptSet
    from app.chat.retriever import Retriever
    from app.chat.small_talk import SmallTalk
    from app.chat.translate import QueryTranslation

log = logging.getLogger(__name__)
_CITATION = re.compile(r"\[(\d{1,3})\]")
_TEXT = StrOutputParser()
PICK_SECONDS = 1.0  # what picking sentences may need; with less left, the lead sentence is quoted
_LEAD = SentencePicker(None)


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


class LLMFault(Exception):
    """An answer attempt that failed; `code` is what callers see, the cause is for the log."""

    def __init__(self, code: LLMError, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: LLMError = code


def error_code(exc: BaseException) -> LLMError:
    """LangChain's provider-neutral error classes mapped to the stable codes users see."""
    if isinstance(exc, LLMFault):
        return exc.code
    if isinstance(exc, ModelTimeoutError):
        return "llm_timeout"
    if isinstance(exc, ModelRateLimitError):
        return "llm_rate_limited"
    if isinstance(exc, ModelConnectionError | ModelError):
        return "llm_unavailable"
    return "llm_error"


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
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        retries: int = 0,
        picker: SentencePicker | None = None,
        small_talk: SmallTalk | None = None,
        translation: QueryTranslation | None = None,
    ) -> None:
        """`deadline`: seconds for the whole answer (None: unbounded); `attempt_timeout`: the
        most one LLM request may take, passed per call (None: the client's own); `retries`:
        further attempts on retryable faults, only before the first token; `picker`: chooses the
        sentences of an answer without LLM (None: the best passage's first sentence);
        `small_talk`: detects greetings and thanks, which get a canned reply without retrieval
        (None: never); `translation`: when set (and with an LLM), the condense call also
        translates the question for retrieval."""
        self.retriever = retriever
        self.prompts = prompts
        self.llm = llm
        self.history_turns = history_turns
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.retries = retries
        self.picker = picker or SentencePicker(None)
        self.small_talk = small_talk
        self.translation = translation
        self._answer_prompt: Runnable | None = None
        self._condense: Runnable | None = None
        if llm is not None:
            self._answer_prompt = ChatPromptTemplate.from_messages(
                [
                    ("system", prompts.system + "{persona}{client_instructions}"),
                    MessagesPlaceholder("history"),
                    ("human", prompts.answer),
                ]
            )
            self._condense_prompt = PromptTemplate.from_template(prompts.condense)
            self._condense = self._condense_prompt | llm | _TEXT
            self._translate_prompt = PromptTemplate.from_template(prompts.condense_translate)

    @property
    def mode(self) -> Mode:
        return "generative" if self.llm is not None else "extractive"

    def invoke(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        deadline: float | None = None,
        options: AnswerOptions | None = None,
    ) -> ChatResult:
        for event in self.stream(question, history, deadline=deadline, options=options):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("stream ended without a result")  # pragma: no cover

    def stream(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        deadline: float | None = None,
        options: AnswerOptions | None = None,
    ) -> Iterator[Token | Done]:
        """Tokens as they arrive, then one Done with the structured result. `deadline` is a
        `time.monotonic()` instant (a server passes the one set when the request arrived);
        None: now plus the chain's own deadline. `options`: an API caller's instructions,
        temperature and answer length, for the answer step only."""
        options = options or AnswerOptions()
        condense_usage, answer_usage = (
            UsageMetadataCallbackHandler(),
            UsageMetadataCallbackHandler(),
        )
        if deadline is None and self.deadline is not None:
            deadline = time.monotonic() + self.deadline
        history = list(history)[-2 * self.history_turns :] if self.history_turns else []
        chat = self.small_talk.match(question) if self.small_talk is not None else None
        if chat is not None:  # a greeting or thanks: a canned reply, no retrieval, no sources
            language = detect_language(question, self.prompts.languages)
            language = chat.language if language == "und" else language
            reply = self.prompts.message(language, f"small_talk_{chat.kind}")
            yield Token(reply)
            yield Done(ChatResult(reply, [], language, self.mode, False, small_talk=True))
            return
        language = question_language(question, history, self.prompts.languages)
        searches = self.retrieval_queries(question, history, language, deadline, [condense_usage])
        query = searches[0]
        started = time.perf_counter()
        sources = distinct_sources(retrieve_fused(self.retriever, searches, language))
        result = ChatResult("", sources, language, "extractive", bool(sources), query)
        result.retrieval_ms = round((time.perf_counter() - started) * 1000, 2)
        if self._answer_prompt is None:
            result.answer = self._extractive(language, sources, "no_llm", query, deadline)
            yield Token(result.answer)
            yield Done(_cited_first(result))
            return
        result.mode = "generative"
        if not sources:  # nothing relevant: say so without spending an LLM call
            result.answer = self.prompts.message(language, "no_answer")
            yield Token(result.answer)
            yield Done(result)
            return
        parts: list[str] = []
        messages = self._answer_prompt.invoke(
            {
                "context": format_context(sources),
                "question": question,
                "language_name": self.prompts.language_name(language),
                "history": _messages(history),
                "persona": self._wrapped(self.prompts.persona, options.persona),
                "client_instructions": self._client_instructions(options.instructions),
            }
        )
        try:
            for piece in self._generate(messages, deadline, result, options, [answer_usage]):
                parts.append(piece)
                yield Token(piece)
        except Exception as exc:  # every LLM fault, after the retries the deadline allows
            result.error = error_code(exc)
            if parts and result.error != "llm_timeout":
                result.error = "llm_incomplete"  # the answer so far is cut, whatever cut it
            if parts:
                result.finish_reason = "length"  # OpenAI's word for an answer cut short
            log.warning("LLM answer failed (%s): %s: %s", result.error, type(exc).__name__, exc)
            fallback = self._extractive(language, sources, "llm_error", query, deadline)
            fallback = f"\n\n{fallback}" if parts else fallback
            parts.append(fallback)
            yield Token(fallback)
        else:
            result.usage = _reported_usage(condense_usage, answer_usage)
        result.answer = "".join(parts)
        yield Done(_cited_first(result))

    def _client_instructions(self, instructions: str) -> str:
        """An API client's system text, wrapped below the product's rules ("" when none)."""
        return self._wrapped(self.prompts.client_instructions, instructions)

    @staticmethod
    def _wrapped(template: str, instructions: str) -> str:
        """Someone else's instructions (an API client's, an assistant's persona) in their
        template, below the product's rules ("" when none). They cannot close or open either
        wrapper's tag, so they cannot pose as the rules' own text."""
        if not instructions.strip() or not template:
            return ""
        text = re.sub(
            r"</?\s*(client|assistant)_instructions\b",
            "[tag removed]",
            instructions,
            flags=re.IGNORECASE,
        )
        return "\n\n" + template.format(instructions=text.strip())

    def _generate(
        self,
        messages: Any,
        deadline: float | None,
        result: ChatResult,
        options: AnswerOptions,
        callbacks: list[BaseCallbackHandler],
    ) -> Iterator[str]:
        """The answer's text pieces; raises LLMFault unless the model says it finished (then
        `result.finish_reason` is set).

        Retries (with backoff, honouring Retry-After) only while nothing was yielded, and only
        while the deadline leaves room; each attempt may take only what is left of it."""
        assert self.llm is not None
        attempt = 0
        while True:
            kwargs: dict[str, Any] = options.llm_kwargs()
            timeout = _left(deadline, self.attempt_timeout)
            if timeout is not None:
                if timeout <= 0:
                    raise LLMFault("llm_timeout", "deadline reached before the LLM answered")
                kwargs["timeout"] = timeout
            yielded, finish = False, None
            try:
                chunks = self.llm.stream(messages, _config(callbacks), **kwargs)
                try:
                    for chunk in chunks:
                        finish = chunk.response_metadata.get("finish_reason") or finish
                        text = str(chunk.text)
                        if text:
                            yielded = True
                            yield text
                        late = deadline is not None and time.monotonic() > deadline
                        if late and finish is None:
                            raise LLMFault("llm_timeout", "deadline reached mid-answer")
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()  # drops the upstream connection at once
                if finish is None:
                    raise LLMFault("llm_incomplete", "the stream ended without a finish reason")
                result.finish_reason = "length" if finish == "length" else "stop"
                return
            except Exception as exc:
                retryable = isinstance(exc, ModelError) and exc.is_retryable
                retryable = retryable or error_code(exc) == "llm_incomplete"  # cut before text
                if yielded or not retryable or attempt >= self.retries:
                    raise
                delay = _retry_after(exc) or min(0.5 * 2**attempt, 8.0)
                left = _left(deadline, None)
                if left is not None and delay >= left:
                    raise
                log.info("LLM attempt %d failed (%s), retrying in %.1f s", attempt + 1, exc, delay)
                time.sleep(delay)
                attempt += 1

    def retrieval_queries(
        self,
        question: str,
        history: Sequence[Turn],
        language: str,
        deadline: float | None = None,
        callbacks: list[BaseCallbackHandler] | None = None,
    ) -> list[str]:
        """The standalone question, then its translations into the knowledge base's main
        languages (other than `language`) when translation is on: one LLM call for both. Any
        fault or unreadable reply: the plain question (or recent turns), as without translation.
        """
        targets = [] if self.translation is None else list(self.translation.languages())
        targets = [code for code in targets if code != language]
        if self.llm is None or self.translation is None or not targets:
            return [self.standalone_question(question, history, deadline, callbacks)]
        earlier = [t.content for t in history if t.role == "user"]
        fallback = "\n".join([*earlier[-2:], question])
        names = self.translation.names
        transcript = "\n".join(f"{t.role}: {t.content}" for t in history)
        try:
            timeout = _left(deadline, self.attempt_timeout)
            if timeout is not None and timeout <= 0:
                raise LLMFault("llm_timeout", "deadline reached before condensing")
            llm = self.llm if timeout is None else self.llm.bind(timeout=timeout)
            reply = (self._translate_prompt | llm | _TEXT).invoke(
                prompt_inputs(question, transcript, targets, names), _config(callbacks)
            )
        except Exception as exc:  # search with what the user wrote
            log.warning("condense/translate step failed: %s: %s", type(exc).__name__, exc)
            return [fallback]
        variants = parse_variants(str(reply), targets, names)
        if variants.standalone is None and not variants.translations:
            log.warning("condense/translate reply unreadable; searching the plain question")
            return [fallback]
        standalone = question if not earlier else variants.standalone or fallback
        return queries(standalone, variants)  # a first turn searches the user's own words

    def standalone_question(
        self,
        question: str,
        history: Sequence[Turn],
        deadline: float | None = None,
        callbacks: list[BaseCallbackHandler] | None = None,
    ) -> str:
        """What retrieval searches for; never what the answer step is asked."""
        earlier = [t.content for t in history if t.role == "user"]
        if not earlier:
            return question
        if self._condense is not None and self.llm is not None:
            transcript = "\n".join(f"{t.role}: {t.content}" for t in history)
            try:
                timeout = _left(deadline, self.attempt_timeout)
                if timeout is not None and timeout <= 0:
                    raise LLMFault("llm_timeout", "deadline reached before condensing")
                condense = self._condense
                if timeout is not None:
                    condense = self._condense_prompt | self.llm.bind(timeout=timeout) | _TEXT
                inputs = {"history": transcript, "question": question}
                condensed = str(condense.invoke(inputs, _config(callbacks)))
                if condensed.strip():
                    return condensed.strip()
            except Exception as exc:  # fall back to the turns themselves
                log.warning("condense step failed: %s: %s", type(exc).__name__, exc)
        return "\n".join([*earlier[-2:], question])

    def _extractive(
        self,
        language: str,
        sources: Sequence[Source],
        note_key: str,
        query: str,
        deadline: float | None = None,
    ) -> str:
        """The short note, then the one to three sentences that answer `query` best, each with
        its [n]; the whole passages travel as the result's sources, not in the answer. Scoring
        sentences embeds them: past (or near) the deadline the best passage's lead sentence is
        quoted instead, so the fallback never makes the answer later than promised."""
        if not sources:
            key = "no_answer" if note_key == "no_llm" else "llm_error_no_sources"
            return self.prompts.message(language, key)
        left = _left(deadline, None)
        picker = self.picker if left is None or left >= PICK_SECONDS else _LEAD
        return f"{self.prompts.message(language, note_key)}\n\n{picker.answer(query, sources)}"


def _cited_first(result: ChatResult) -> ChatResult:
    """Record which sources the answer cites and list those first (numbers unchanged)."""
    result.cited = cited_numbers(result.answer, result.sources)
    result.sources = cited_first(result.sources, result.cited)
    return result


def _config(callbacks: list[BaseCallbackHandler] | None) -> RunnableConfig:
    return {"callbacks": callbacks} if callbacks else {}


def _reported_usage(
    condense: UsageMetadataCallbackHandler, answer: UsageMetadataCallbackHandler
) -> Usage | None:
    """What the LLM reported for this answer's calls; None unless the answer call reported."""
    if not answer.usage_metadata:
        return None
    reports = [*condense.usage_metadata.values(), *answer.usage_metadata.values()]
    prompt = sum(r.get("input_tokens", 0) for r in reports)
    return Usage(prompt, sum(r.get("output_tokens", 0) for r in reports))


def _left(deadline: float | None, cap: float | None) -> float | None:
    """Seconds left before `deadline`, no more than `cap`; None when neither bounds it."""
    if deadline is None:
        return cap
    left = deadline - time.monotonic()
    return left if cap is None else min(left, cap)


def _retry_after(exc: BaseException) -> float | None:
    """The upstream's Retry-After in seconds, when its response carried one."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _messages(history: Sequence[Turn]) -> list[BaseMessage]:
    return [HumanMessage(t.content) if t.role == "user" else AIMessage(t.content) for t in history]
