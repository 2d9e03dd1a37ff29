"""Split documents into chunks measured in the embedding model's own tokens.

A chunk plus the model's passage prefix and its special tokens never exceeds the model's maximum
sequence length (512 for E5), so nothing is silently truncated at embedding time. Markdown is
split at headings first, then paragraphs, lines and sentences.

Work is bounded per document: text is handed to the splitters in windows of at most
``WINDOW_CHARS`` (cut at a paragraph, line or space), so a 50 MB single line is never tokenised
whole, and ``split(doc, max_chunks=N)`` stops after N chunks. Runs of headings with no text under
them (a table of contents, 10,000 headings) are merged into chunks instead of one chunk each.

No chunk is shorter than ``min_tokens`` when a neighbour can take it: a two-sentence section or a
lone heading embeds as a vague vector that wins unrelated searches, so it joins the next piece of
the same page (else the previous one) while the pair fits in a chunk. A document shorter than
that as a whole is still one chunk. ``Chunk.section`` is the heading path of the chunk's first
piece ("Title > Section > Subsection", six levels).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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

WINDOW_CHARS = 100_000
_HEADINGS = [("#" * level, f"h{level}") for level in range(1, 7)]
DEFAULT_MIN_TOKENS = 48
# No "" (character) separator: LangChain would measure every character alone and overcount
# scripts without spaces (Thai, long CJK runs); such text is cut by token windows instead.
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
]


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int
    tokens: int
    section: str = ""
    page: int | None = None


@dataclass(frozen=True)
class SplitResult:
    chunks: list[Chunk]
    cut: bool  # True when the document had more than max_chunks chunks


def _heading_only(text: str) -> bool:
    return all(line.lstrip().startswith("#") for line in text.splitlines() if line.strip())


def windows(text: str, size: int) -> Iterator[str]:
    """Consecutive pieces of at most ``size`` characters, cut at a paragraph, line or space."""
    start = 0
    while len(text) - start > size:
        end = start + size
        for sep in ("\n\n", "\n", " "):
            at = text.rfind(sep, start + size // 2, end)
            if at > start:
                end = at + len(sep)
                break
        yield text[start:end]
        start = end
    yield text[start:]


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
        min_tokens: int = DEFAULT_MIN_TOKENS,
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
        self.min_tokens = min(min_tokens, self.chunk_tokens // 2)
        self._markdown = MarkdownHeaderTextSplitter(_HEADINGS, strip_headers=False)
        sentences = [re.escape(s) for s in _SENTENCE_SEPARATORS]
        markdown = RecursiveCharacterTextSplitter.get_separators_for_language(Language.MARKDOWN)
        self._md_splitter = self._splitter(markdown[1:5] + sentences)  # fences, rules
        self._plain_splitter = self._splitter(sentences)

    def _splitter(self, separators: list[str]) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            separators=separators,
            chunk_size=self.chunk_tokens,
            chunk_overlap=self.overlap,
            length_function=self.count,
            keep_separator="end",
            is_separator_regex=True,
            strip_whitespace=True,
        )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def model_tokens(self, text: str) -> int:
        """Tokens the model will see for this chunk: specials + prefix + text, as one string."""
        return len(self.tokenizer.encode(self.prefix + text, add_special_tokens=True).ids)

    def split(self, doc: LoadedDocument, max_chunks: int | None = None) -> list[Chunk]:
        """Chunks of the document in order; at most ``max_chunks`` (see `SplitResult`)."""
        return self.split_capped(doc, max_chunks).chunks

    def split_capped(self, doc: LoadedDocument, max_chunks: int | None = None) -> SplitResult:
        chunks: list[Chunk] = []
        for text, heading, page in self._merge_small(self._pieces(doc)):
            if max_chunks is not None and len(chunks) >= max_chunks:
                return SplitResult(chunks, cut=True)
            chunks.append(Chunk(text, len(chunks), self.model_tokens(text), heading, page))
        return SplitResult(chunks, cut=False)

    def _pieces(self, doc: LoadedDocument) -> Iterator[tuple[str, str, int | None]]:
        for section in doc.sections:
            for window in windows(section.text, WINDOW_CHARS):
                if doc.markup != "markdown":
                    yield from ((t, "", section.page) for t in self._fit(window, False))
                    continue
                parts = [
                    (part.page_content, " > ".join(str(v) for v in part.metadata.values()))
                    for part in self._markdown.split_text(window)
                ]
                for text, heading in self._merge_heading_runs(parts):
                    yield from ((t, heading, section.page) for t in self._fit(text, True))

    def _merge_small(
        self, pieces: Iterator[tuple[str, str, int | None]]
    ) -> Iterator[tuple[str, str, int | None]]:
        """Join each piece under ``min_tokens`` to the next piece, else to the previous one."""
        if self.min_tokens <= 0:
            yield from pieces
            return
        prev: tuple[str, str, int | None] | None = None
        cur = next(pieces, None)
        while cur is not None:
            nxt = next(pieces, None)
            while nxt is not None and self._small(cur[0]):
                joined = self._joined(cur, nxt)
                if joined is None:
                    break
                cur, nxt = joined, next(pieces, None)
            joined = self._joined(prev, cur) if prev and self._small(cur[0]) else None
            if joined is not None:
                prev = joined
            else:
                if prev is not None:
                    yield prev
                prev = cur
            cur = nxt
        if prev is not None:
            yield prev

    def _small(self, text: str) -> bool:
        return self.count(text) < self.min_tokens

    def _joined(
        self, first: tuple[str, str, int | None], second: tuple[str, str, int | None]
    ) -> tuple[str, str, int | None] | None:
        """Both pieces as one chunk, if they share a page and fit; the first one's heading."""
        if first[2] != second[2]:
            return None
        text = f"{first[0]}\n\n{second[0]}"
        if self.count(text) > self.chunk_tokens or self.model_tokens(text) > self.max_tokens:
            return None
        return text, first[1], first[2]

    def _merge_heading_runs(self, parts: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """Carry heading-only parts forward into the next part while they fit in one chunk."""
        run: list[str] = []
        run_heading, run_tokens = "", 0
        for text, heading in parts:
            tokens = self.count(text) + 1
            if run and run_tokens + tokens > self.chunk_tokens:
                yield "\n\n".join(run), run_heading
                run, run_tokens = [], 0
            if not run:
                run_heading = heading
            run.append(text)
            run_tokens += tokens
            if not _heading_only(text):
                yield "\n\n".join(run), heading
                run, run_tokens = [], 0
        if run:
            yield "\n\n".join(run), run_heading

    def _fit(self, text: str, markdown: bool) -> list[str]:
        whole = text.strip()
        if not whole:
            return []
        if self.count(whole) <= self.chunk_tokens and self.model_tokens(whole) <= self.max_tokens:
            return [whole]  # fits as it is: the common case, no splitting to do
        splitter = self._md_splitter if markdown else self._plain_splitter
        out: list[str] = []
        for piece in splitter.split_text(text):
            if not piece.strip():
                continue
            if (
                self.count(piece) <= self.chunk_tokens
                and self.model_tokens(piece) <= self.max_tokens
            ):
                out.append(piece)
            else:  # no separator left to split on, or a merge that tokenised longer: cut by tokens
                out += self._hard_split(piece)
        if len(out) > 1 and all(line.startswith("#") for line in out[0].splitlines() if line):
            joined = (
                f"{out[0]}\n\n{out[1]}"  # a heading alone is a useless chunk: keep it with text
            )
            if self.model_tokens(joined) <= self.max_tokens:
                out[:2] = [joined]
        return out

    def _hard_split(self, text: str) -> list[str]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        size = max(self.chunk_tokens - 4, 8)  # a cut substring can re-tokenise a little longer
        step = max(size - self.overlap, 8)
        parts = []
        for start in range(0, max(len(ids.ids) - self.overlap, 1), step):
            span = ids.offsets[start : start + size]
            parts.append(text[span[0][0] : span[-1][1]].strip())
        return [p for p in parts if p]
