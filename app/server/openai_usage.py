"""The `usage` of a /v1 completion: the LLM's own count when it reported one for the whole answer
(the condense step included), else kbchat's count with the embedding model's tokenizer (XLM-R's
SentencePiece for multilingual-E5): the client's messages as the prompt, the answer as the
completion. Extractive answers, small talk and fallbacks after an LLM fault are counted that way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from app.chat.types import ChatResult

UsageSource = Literal["llm", "tokenizer"]


class _Encoding(Protocol):
    ids: list[int]


class _Tokenizer(Protocol):
    def encode(self, text: str, *, add_special_tokens: bool = ...) -> _Encoding: ...


class _HasTokenizer(Protocol):
    @property
    def tokenizer(self) -> Any: ...


def token_counter(embedder: _HasTokenizer) -> Callable[[str], int]:
    """Tokens of a text as the embedding model splits it, special tokens left out."""

    def count(text: str) -> int:
        if not text:
            return 0
        tokenizer: _Tokenizer = embedder.tokenizer
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


def usage(
    result: ChatResult, prompt: str, count: Callable[[str], int]
) -> tuple[dict[str, int], UsageSource]:
    """OpenAI's usage object for one answer, and where its numbers come from."""
    if result.usage is not None:
        prompt_tokens, completion_tokens = (
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
        )
        source: UsageSource = "llm"
    else:
        prompt_tokens, completion_tokens, source = count(prompt), count(result.answer), "tokenizer"
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }, source
