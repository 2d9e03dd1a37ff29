"""Split documents into chunks measured in the embedding model's own tokens.

A chunk plus the model's passage prefix and its special tokens never exceeds the model's maximum
sequence length (512 for E5), so nothing is silently truncated at embedding time. Markdown is
split at headings first, then paragraphs, lines and sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_text_splitters import (
    Language,
    MarkdownHeaderTextSplitter,
    RecursiveCharacterTextSplitter,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from ingestion.loaders import LoadedDocument

_HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_SENTENCE_SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "．",
    "！",
    "？",
    "؟",
    "। ",
    ". ",
    "! ",
    "? ",
    "; ",
    "، ",
    ", ",
    "，",
    "、",
    " ",
    "",
]


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int
    tokens: int
    section: str = ""
    page: int | None = None


class TokenChunker:
    """Recursive splitting (LangChain) with the model tokenizer as the length function."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_tokens: int,
        passage_prefix: str,
        chunk_tokens: int,
        overlap: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.prefix = passage_prefix
        self.specials = len(tokenizer.encode("", add_special_tokens=True).ids)
        room = max_tokens - self.specials - self.count(passage_prefix) - 1  # 1: boundary merge
        if room < 16:
            raise ValueError(f"max sequence length {max_tokens} leaves no room for text")
        self.chunk_tokens = min(chunk_tokens, room)
        self.overlap = min(overlap, self.chunk_tokens // 2)
        self._markdown = MarkdownHeaderTextSplitter(_HEADINGS, strip_headers=False)
        self._md_splitter = self._splitter(
            RecursiveCharacterTextSplitter.get_separators_for_language(Language.MARKDOWN)[:-2]
            + _SENTENCE_SEPARATORS
        )
        self._plain_splitter = self._splitter(_SENTENCE_SEPARATORS)

    def _splitter(self, separators: list[str]) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            separators=separators,
            chunk_size=self.chunk_tokens,
            chunk_overlap=self.overlap,
            length_function=self.count,
            keep_separator="end",
            strip_whitespace=True,
        )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def model_tokens(self, text: str) -> int:
        """Tokens the model will see for this chunk: specials + prefix + text, as one string."""
        return len(self.tokenizer.encode(self.prefix + text, add_special_tokens=True).ids)

    def split(self, doc: LoadedDocument) -> list[Chunk]:
        pieces: list[tuple[str, str, int | None]] = []
        for section in doc.sections:
            if doc.markup == "markdown":
                for part in self._markdown.split_text(section.text):
                    heading = " > ".join(str(v) for v in part.metadata.values())
                    texts = self._fit(part.page_content, True)
                    pieces += [(t, heading, section.page) for t in texts]
            else:
                pieces += [(t, "", section.page) for t in self._fit(section.text, False)]
        return [
            Chunk(text, i, self.model_tokens(text), heading, page)
            for i, (text, heading, page) in enumerate(pieces)
        ]

    def _fit(self, text: str, markdown: bool) -> list[str]:
        splitter = self._md_splitter if markdown else self._plain_splitter
        out: list[str] = []
        for piece in splitter.split_text(text):
            if not piece.strip():
                continue
            if self.model_tokens(piece) <= self.max_tokens:
                out.append(piece)
            else:  # token counts of merged pieces can exceed the sum of their parts: cut again
                out += self._hard_split(piece)
        return out

    def _hard_split(self, text: str) -> list[str]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        step = max(self.chunk_tokens - 8, 8)
        parts = []
        for start in range(0, len(ids.ids), step):
            span = ids.offsets[start : start + step]
            parts.append(text[span[0][0] : span[-1][1]].strip())
        return [p for p in parts if p]
