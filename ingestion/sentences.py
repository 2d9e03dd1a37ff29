"""A chunk's sentences: cut for short answers, and embedded one by one for ranking.

Sentences are cut with sentencex (Wikimedia's rule-based segmenter, ~300 languages, abbreviations
and CJK/Arabic/Devanagari punctuation included); Thai and Lao, which end sentences with a space,
are cut at whitespace and packed.

Sentence vectors: a question usually asks about one fact, stated in one sentence, while a chunk's
vector averages everything the chunk says. Ingestion embeds each sentence of a chunk (passage
form) and keeps the vectors with the chunk, in its metadata, packed as float16 (`pack`): they are
written, replaced and deleted with the chunk in one Chroma call, on the embedded store and a
Chroma server alike, and come back with every search hit, so ranking them costs no extra query.
Ranking scores a chunk by the mean of its own cosine and its best sentence's
(app/chat/ranking.py; measured in docs/language_centring.md).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import sentencex

if TYPE_CHECKING:
    from tokenizers import Tokenizer

META_KEY = "kbchat_sentences"
MAX_SENTENCES = 48  # per chunk: a 512-token chunk rarely has more; the rest go unembedded
MIN_SENTENCE_TOKENS = 18
"""A shorter sentence (a list item, a "**Type:** Li-ion" line) is joined with the ones after it:
alone it says too little to be matched, and a short line about a neighbouring topic outranked
whole answers. Counted in the model's own tokens, not characters: 80 characters were chosen on
examples/kb (37 ranked first with single sentences, 40/41/37 with 60/80/120 characters) and are
about 18 tokens of English, but 54 of Chinese (1.5 characters a token) and 26 of Arabic, so a
Chinese chunk got half the sentence vectors of the same text in English (XQuAD dev: 2.1 against
4.3 a paragraph). In tokens: same-language recall@1 zh 0.929 -> 0.945, ar 0.899 -> 0.904, mixed
knowledge base 0.767 -> 0.772, English corpus 0.877 -> 0.875 (docs/language_centring.md)."""
SENTENCE_CHARS = 300  # a longer "sentence" (a run-on list, a table row) is cut into pieces
MIN_LETTERS = 3  # pieces with fewer (a bullet mark, a page number) are no answer on their own
# Thai and Lao end sentences with a space, not a mark, so no punctuation rule finds them: there
# a run of whitespace is the boundary, and the pieces are packed up to this length.
SPACE_DELIMITED = {"th": 160, "lo": 160}
_LETTER = re.compile(r"[^\W\d_]")
_HEADING = re.compile(r"^#{1,6}\s")  # a Markdown heading line: it names a topic, answers nothing
_BULLET = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+")
_SPACES = re.compile(r"\s+")
_MARKUP = re.compile(r"[*_`|#>~]+")
_CLAUSE = re.compile(r"(?<=[,;:，、；：])")


def split_sentences(text: str, language: str) -> list[str]:
    """Sentences of a passage; a line break always ends one (list items), Markdown headings and
    list markers are left out."""
    pieces: list[str] = []
    limit = SPACE_DELIMITED.get(language)
    for line in text.splitlines():
        line = _BULLET.sub("", line.strip())
        if not line or _HEADING.match(line):
            continue
        if limit is not None:
            pieces.extend(_pack(_SPACES.split(line), limit, " "))
            continue
        for sentence in sentencex.segment(language if language not in ("", "und") else "en", line):
            pieces.extend(bounded(sentence.strip(), SENTENCE_CHARS))
    return [p for p in pieces if len(_LETTER.findall(p)) >= MIN_LETTERS] or pieces


def bounded(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters: at spaces, else after commas, else cut."""
    if len(text) <= limit:
        return [text] if text else []
    words = _SPACES.split(text)
    if len(words) > 1 and max(map(len, words)) <= limit:
        return _pack(words, limit, " ")
    clauses = [c for c in _CLAUSE.split(text) if c]
    if len(clauses) > 1 and max(map(len, clauses)) <= limit:
        return _pack(clauses, limit, "")
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def _pack(parts: list[str], limit: int, joiner: str) -> list[str]:
    """Consecutive parts joined into pieces no longer than `limit` (a longer part stands alone)."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        if not part:
            continue
        joined = f"{current}{joiner}{part}" if current else part
        if len(joined) <= limit or not current:
            current = joined
        else:
            pieces.append(current)
            current = part
    if current:
        pieces.append(current)
    return [p for piece in pieces for p in ([piece] if len(piece) <= limit else _cut(piece, limit))]


def _cut(text: str, limit: int) -> list[str]:
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def sentence_texts(text: str, language: str, tokens: Callable[[str], int]) -> list[str]:
    """The sentences of a chunk that get a vector of their own, short ones (fewer than
    MIN_SENTENCE_TOKENS by `tokens`, the model's token count) joined with the next; none when
    that leaves one piece (the chunk's own vector already says it)."""
    pieces: list[str] = []
    current, count = "", 0
    for sentence in split_sentences(text, language):
        current = f"{current} {sentence}" if current else sentence
        count += tokens(sentence)
        if count >= MIN_SENTENCE_TOKENS:
            pieces.append(current)
            current, count = "", 0
    if current:  # a short tail joins the piece before it
        pieces = [*pieces[:-1], f"{pieces[-1]} {current}"] if pieces else [current]
    return pieces[:MAX_SENTENCES] if len(pieces) > 1 else []


def token_counter(tokenizer: Tokenizer) -> Callable[[str], int]:
    """How many of the model's tokens a text's words take: Markdown marks (`**Type:**`) say
    nothing, so they are not counted; special tokens neither."""

    def count(text: str) -> int:
        return len(tokenizer.encode(_MARKUP.sub("", text), add_special_tokens=False).ids)

    return count


def pack(vectors: np.ndarray) -> str:
    """Vectors as text for Chroma metadata: float16, little-endian, base64 (dimension first)."""
    rows = np.asarray(vectors, dtype="<f2")
    header = np.array([rows.shape[1] if rows.ndim == 2 else 0], dtype="<u2").tobytes()
    return base64.b64encode(header + rows.tobytes()).decode("ascii")


def unpack(text: object, dimension: int) -> np.ndarray | None:
    """The vectors `pack` wrote, or None for anything else (absent, damaged, another model)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) < 2 or int(np.frombuffer(raw[:2], dtype="<u2")[0]) != dimension:
        return None
    body = raw[2:]
    if not body or len(body) % (2 * dimension):
        return None
    return np.frombuffer(body, dtype="<f2").reshape(-1, dimension).astype(np.float64)
