"""What the chain takes and gives back; plain data shared by the CLI, API and widget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
    url: str | None = None  # the document's own web address (http/https), when it states one

    def as_dict(self) -> dict[str, Any]:
        """Its fields as a dict, for JSON. Every field is a plain value, so a shallow copy is
        `dataclasses.asdict` without its deep copy (a turn turns sources into dicts twice)."""
        return {name: getattr(self, name) for name in _SOURCE_FIELDS}


_SOURCE_FIELDS = tuple(f.name for f in fields(Source))


@dataclass(frozen=True)
class Usage:
    """Tokens as the LLM counted them (its own `usage` reports), for the API's `usage` field."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class AnswerOptions:
    """What one API caller may set for the answer step, already within the server's caps."""

    instructions: str = ""  # the client's system messages: below the product's own rules
    temperature: float | None = None  # None: the configured one
    max_tokens: int | None = None  # None: the configured one
    persona: str = ""  # an assistant's persona and tone: below the rules, above `instructions`
    model: str | None = None  # an assistant's model (already allowed); None: the configured one

    def llm_kwargs(self) -> dict[str, Any]:
        """Overrides for the answer call only (the condense step keeps the configured ones)."""
        pairs = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "model": self.model,
        }
        return {k: v for k, v in pairs.items() if v is not None}


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
    usage: Usage | None = None  # the LLM's own count, when it reported one for a whole answer

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
