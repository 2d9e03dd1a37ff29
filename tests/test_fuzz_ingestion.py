"""Property-based fuzzing (hypothesis) of the loaders and the chunker, bounded for CI.

Any bytes under any supported name either load or fail with a `LoaderError` and a reason; loaded
text is clean, valid Unicode within the character cap. Any text chunks into in-order, non-empty
chunks that fit the model window, never more than the chunk cap.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.chunking import TokenChunker
from ingestion.loaders import (
    SUPPORTED_EXTENSIONS,
    LoadedDocument,
    LoaderError,
    Section,
    decode,
    load_bytes,
)
from tests.fakes import real_tokenizer

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
MAX_CHARS = 2000

# Bytes that look like the start of real files, so the fuzzer reaches the parsers' insides.
_PREFIXES = [
    b"",
    b"%PDF-1.4\n",
    b"PK\x03\x04",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
    b"<html><body>",
    b"# ",
]
raw_files = st.tuples(st.sampled_from(_PREFIXES), st.binary(max_size=3000)).map(
    lambda t: t[0] + t[1]
)
text_like = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=3000,
)


@FUZZ
@given(data=raw_files, ext=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)))
def test_any_bytes_load_or_fail_with_a_reason(data: bytes, ext: str) -> None:
    try:
        doc = load_bytes(data, "fuzz" + ext, max_chars=MAX_CHARS)
    except LoaderError as exc:
        assert exc.reason
        return
    assert doc.text.strip()
    assert "\x00" not in doc.text
    doc.text.encode("utf-8")  # no lone surrogates: it can be stored and sent as JSON
    doc.title.encode("utf-8")
    assert len(doc.text) <= MAX_CHARS + 2 * len(doc.sections)


@FUZZ
@given(text=text_like, encoding=st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]))
def test_text_survives_a_round_trip(text: str, encoding: str) -> None:
    got = decode(text.encode(encoding), max_chars=None)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")  # NUL alone means binary
    assert got.text == expected.removeprefix("\ufeff")


@pytest.fixture(scope="module")
def chunker() -> TokenChunker:
    return TokenChunker(
        real_tokenizer(), max_tokens=128, passage_prefix="passage: ", chunk_tokens=64, overlap=8
    )


markdownish = st.lists(
    st.one_of(
        st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 6), st.text(max_size=40)),
        text_like.map(lambda t: t[:400]),
        st.just(""),
        st.just("```"),
    ),
    max_size=60,
).map("\n".join)


@FUZZ
@given(text=markdownish, markup=st.sampled_from(["markdown", "plain"]), cap=st.integers(1, 30))
def test_chunks_fit_are_ordered_and_capped(
    chunker: TokenChunker, text: str, markup: str, cap: int
) -> None:
    doc = LoadedDocument("t", [Section(text)], markup, "utf-8")
    result = chunker.split_capped(doc, max_chunks=cap)
    assert len(result.chunks) <= cap
    assert [c.index for c in result.chunks] == list(range(len(result.chunks)))
    for c in result.chunks:
        assert c.text.strip()
        assert c.tokens == chunker.model_tokens(c.text) <= chunker.max_tokens
    if not result.cut:
        uncapped = chunker.split(doc)
        assert [c.text for c in uncapped] == [c.text for c in result.chunks]
