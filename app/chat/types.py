"""What the chain takes and gives back; plain data shared by the CLI, API and widget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["generative", "extractive"]

LLMError = Literal[
    "llm_timeout",  # the deadline (or a request's timeout) passed before the answer finished
    "llm_rate_limited",  # the LLM refused with 429 after the retries the deadline allowed
    "llm_unavailable",  # unreachable, 5xx, or refused the request (auth, unknown model)
    "llm_incomplete",  # the answer started, then the stream broke off (no finish reason)
    "llm_error",  # anything else
]
"""Stable codes for `ChatResult.error`: what API clients see; the upstream detail is logged."""
LLM_ERRORS: tuple[LLMError, ...] = (
    "llm_timeout",
    "llm_rate_limited",
    "llm_unavailable",
    "llm_incomplete",
    "llm_error",
)


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Source:
    number: int  # the [n] the answer cites
    source: str  # path relative to the knowledge-base folder
    title: str
    language: str
    score: float  # cosine similarity
    text: str
    page: int | None = None
    section: str = ""
    chunk_index: int = 0
    ranking_score: float | None = None  # cosine minus the language offset, when centring ranked


@dataclass
class ChatResult:
    answer: str
    sources: list[Source]
    language: str  # detected language of the question
    mode: Mode
    grounded: bool  # whether any passage passed the relevance cut-off
    retrieval_query: str = ""
    error: LLMError | None = None  # set when the LLM failed: the answer ends with the fallback
    finish_reason: Literal["stop", "length"] = "stop"  # "length": the LLM's text was cut short
    cited: list[int] = field(default_factory=list)
    retrieval_ms: float = 0.0  # embedding the query and searching the store
    small_talk: bool = False  # a greeting, thanks or goodbye: a canned reply, no retrieval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Token:
    """One streamed piece of the answer."""

    text: str


@dataclass(frozen=True)
class Done:
    """The end of a stream: the whole structured result."""

    result: ChatResult
