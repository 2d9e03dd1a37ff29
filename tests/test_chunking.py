"""Token-budgeted chunking with the real XLM-R tokenizer, across scripts with and without spaces."""

from __future__ import annotations

import base64
import itertools
import random

import pytest

from ingestion.chunking import Chunk, TokenChunker
from ingestion.loaders import LoadedDocument, Section
from tests.fakes import FakeEmbedder, real_tokenizer

MAX = 512
PREFIX = "passage: "

_SENTENCES = {
    "en": "Sentence {i} explains how the library lends books to visitors for three weeks.",
    "de": "Satz {i} erklärt, wie die Stadtbücherei Bücher für drei Wochen an Besucher verleiht.",
    "zh": "第{i}句话说明图书馆如何把书借给读者三个星期，并且提醒他们按时归还。",
    "ja": "第{i}文は、図書館が本を三週間利用者に貸し出す方法を説明しています。",
    "ar": "الجملة {i} تشرح كيف تعير المكتبة الكتب للزوار لمدة ثلاثة أسابيع. ",
    "th": "ประโยคที่ {i} อธิบายว่าห้องสมุดให้ผู้มาเยือนยืมหนังสือได้สามสัปดาห์ ",
}


def long_text(lang: str, chars: int = 6000, paragraph_every: int = 7) -> str:
    """Numbered sentences (so every one is unique), with a blank line every few sentences."""
    parts: list[str] = []
    i = 0
    while sum(len(p) for p in parts) < chars:
        parts.append(_SENTENCES[lang].format(i=i))
        i += 1
        if paragraph_every and i % paragraph_every == 0:
            parts.append("\n\n")
        elif lang in ("en", "de"):
            parts.append(" ")
    return "".join(parts).strip()


def dense_strings() -> dict[str, str]:
    rng = random.Random(1234)
    b64 = base64.b64encode(rng.randbytes(3750)).decode()  # 5000 chars, no separators at all
    url = "https://example.com/" + "".join(
        f"{rng.choice(['seg', 'Pfad', 'x'])}{rng.randrange(10**9)}%2F" for _ in range(400)
    )
    hexes = "".join(f"{rng.getrandbits(32):08x}" for _ in range(625))
    return {"base64": b64, "url": url[:5000], "hex": hexes}


def doc(text: str, markup: str = "plain") -> LoadedDocument:
    return LoadedDocument("t", [Section(text)], markup, "utf-8")


def chunker(chunk_tokens: int = 100, overlap: int = 0, min_tokens: int = 0) -> TokenChunker:
    """No merging of small pieces unless asked, so each test sees the mechanism it is about."""
    return TokenChunker(
        real_tokenizer(),
        max_tokens=MAX,
        passage_prefix=PREFIX,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        min_tokens=min_tokens,
    )


def test_fake_embedder_uses_real_tokenizer() -> None:
    fake = FakeEmbedder()
    assert fake.tokenizer is real_tokenizer()
    assert fake.tokenizer.get_vocab_size() == 250002
    ids = fake.tokenizer.encode("passage: hello", add_special_tokens=True).ids
    assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>


@pytest.mark.parametrize("lang", sorted(_SENTENCES))
@pytest.mark.parametrize("chunk_tokens", [100, 350, 10_000])
def test_languages_fit_the_model(lang: str, chunk_tokens: int) -> None:
    c = chunker(chunk_tokens, overlap=20)
    text = long_text(lang)
    chunks = c.split(doc(text))
    assert len(chunks) >= 2
    assert [ch.index for ch in chunks] == list(range(len(chunks)))
    for ch in chunks:
        assert ch.text.strip() == ch.text and ch.text
        assert c.model_tokens(ch.text) <= MAX
        assert ch.tokens == c.model_tokens(ch.text)
        if chunk_tokens == 100:
            assert c.count(ch.text) <= 110, (lang, ch.text)
    # nothing is lost: every sentence of the text is in some chunk
    joined = "\n".join(ch.text for ch in chunks)
    sentences = [s.strip() for s in _sentences(lang, text)]
    assert len(sentences) > 40
    missing = [s for s in sentences if s not in joined]
    assert not missing, missing[:3]


def _sentences(lang: str, text: str) -> list[str]:
    out, i = [], 0
    while (s := _SENTENCES[lang].format(i=i).strip()) in text:
        out.append(s)
        i += 1
    return out


@pytest.mark.parametrize("name", ["base64", "url", "hex"])
@pytest.mark.parametrize("chunk_tokens", [100, 10_000])
def test_token_dense_strings_without_separators(name: str, chunk_tokens: int) -> None:
    text = dense_strings()[name]
    assert len(text) == 5000
    c = chunker(chunk_tokens, overlap=10)
    chunks = c.split(doc(text))
    assert len(chunks) >= 2
    for ch in chunks:
        assert c.model_tokens(ch.text) <= MAX
        if chunk_tokens == 100:
            assert c.count(ch.text) <= 110
    # no character of the string is dropped: chunks cover it in order
    pos = 0
    for ch in chunks:
        found = text.find(ch.text[:20], max(0, pos - len(ch.text)))
        assert found >= 0
        pos = found + len(ch.text)
    assert pos == len(text)


def test_hard_split_covers_a_single_huge_piece() -> None:
    c = chunker(100)
    text = dense_strings()["base64"]
    parts = c._hard_split(text)
    assert "".join(parts) == text
    assert all(c.count(p) <= c.chunk_tokens for p in parts)


def test_overlap_shares_text_between_neighbours() -> None:
    text = long_text("en", 4000, paragraph_every=0)  # one paragraph of short sentences
    with_overlap = chunker(100, overlap=30).split(doc(text))
    without = chunker(100, overlap=0).split(doc(text))
    assert len(with_overlap) >= 4
    for a, b in itertools.pairwise(with_overlap):
        first_sentence = b.text.split(". ")[0]
        assert first_sentence in a.text, (a.text[-80:], b.text[:80])
    for a, b in itertools.pairwise(without):
        first_sentence = b.text.split(". ")[0]
        assert first_sentence not in a.text
    assert len(with_overlap) > len(without)


def test_overlap_in_cjk_without_spaces() -> None:
    text = long_text("zh", 3000, paragraph_every=0)
    chunks = chunker(100, overlap=40).split(doc(text))
    assert len(chunks) >= 3
    for a, b in itertools.pairwise(chunks):
        assert b.text[:10] in a.text


def test_markdown_sections_follow_headings() -> None:
    body = long_text("en", 1500, paragraph_every=3)
    md = (
        "# Library Guide\n\nIntro paragraph about the library.\n\n"
        f"## Lending\n\n{body}\n\n"
        "### Late fees\n\nLate books cost ten cents a day.\n\n"
        "## Opening hours\n\nMonday to Friday, nine to five.\n"
    )
    chunks = chunker(100, overlap=0).split(doc(md, "markdown"))
    sections = [ch.section for ch in chunks]
    assert sections[0] == "Library Guide"
    assert "Library Guide > Lending" in sections
    assert "Library Guide > Lending > Late fees" in sections
    assert sections[-1] == "Library Guide > Opening hours"
    assert sections.count("Library Guide > Lending") >= 3  # the long section is split further
    # headings are kept in the text, and each chunk belongs to its own heading
    late = [ch for ch in chunks if ch.section.endswith("Late fees")]
    assert len(late) == 1 and "ten cents" in late[0].text
    assert "nine to five" in chunks[-1].text
    for ch in chunks:
        assert chunker(100).model_tokens(ch.text) <= MAX
        assert chunker(100).count(ch.text) <= 110


def test_plain_text_has_no_sections() -> None:
    chunks = chunker(100).split(doc("# Not a heading in plain text\n\nbody text here"))
    assert [ch.section for ch in chunks] == [""]


def test_pages_are_kept() -> None:
    d = LoadedDocument(
        "p",
        [Section(long_text("de", 1200), page=1), Section("Seite zwei.", page=2)],
        "plain",
        None,
    )
    chunks = chunker(100).split(d)
    assert {ch.page for ch in chunks} == {1, 2}
    assert chunks[-1] == Chunk("Seite zwei.", len(chunks) - 1, chunks[-1].tokens, "", 2)
    assert [ch.index for ch in chunks] == list(range(len(chunks)))


def test_whitespace_only_gives_no_chunks() -> None:
    assert chunker(100).split(doc("   \n\n\t \n")) == []


def test_chunk_tokens_capped_to_model() -> None:
    tok = real_tokenizer()
    c = chunker(chunk_tokens=10_000, overlap=10_000)
    prefix_tokens = len(tok.encode(PREFIX, add_special_tokens=False).ids)
    assert c.specials == 2
    assert c.chunk_tokens == MAX - 2 - prefix_tokens - 1
    assert c.chunk_tokens < MAX - prefix_tokens
    assert c.overlap == c.chunk_tokens // 2
    small = chunker(chunk_tokens=100, overlap=30)
    assert (small.chunk_tokens, small.overlap) == (100, 30)


def test_model_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves no room"):
        TokenChunker(
            real_tokenizer(), max_tokens=16, passage_prefix=PREFIX, chunk_tokens=8, overlap=0
        )


# --------------------------------------------------------------------------- bounded work (issue 7)


def test_heading_only_runs_merge_instead_of_one_chunk_each() -> None:
    text = "".join(f"# Heading number {i}\n\n" for i in range(10_000))
    c = chunker(chunk_tokens=200)
    chunks = c.split(doc(text, "markdown"))
    assert len(chunks) < 10_000 // 20  # today: 10,000 chunks, one per heading
    joined = "\n".join(ch.text for ch in chunks)
    assert all(f"Heading number {i}\n" in joined + "\n" for i in (0, 1, 4999, 9999))
    assert all(ch.tokens <= c.max_tokens for ch in chunks)


def test_heading_run_joins_the_text_below_it() -> None:
    text = "# Part\n\n## Chapter\n\n### Section\n\nThe only paragraph of body text."
    chunks = chunker().split(doc(text, "markdown"))
    assert len(chunks) == 1 and chunks[0].text.startswith("# Part")
    assert chunks[0].section == "Part > Chapter > Section"


def test_max_chunks_stops_early_and_says_so() -> None:
    c = chunker(chunk_tokens=50)
    long = doc(long_text("en", chars=20_000))
    full = c.split(long)
    capped = c.split_capped(long, max_chunks=5)
    assert len(full) > 5 and capped.cut
    assert [ch.text for ch in capped.chunks] == [ch.text for ch in full[:5]]
    assert not c.split_capped(long, max_chunks=len(full)).cut


def test_a_huge_single_line_is_split_in_windows() -> None:
    c = chunker(chunk_tokens=100)
    line = "lorem ipsum dolor sit amet " * 20_000  # 540,000 characters, one line
    capped = c.split_capped(doc(line), max_chunks=20)
    assert capped.cut and len(capped.chunks) == 20
    assert all(ch.tokens <= c.max_tokens for ch in capped.chunks)


# --------------------------------------------------------------------------- clean chunks


def product_chunker() -> TokenChunker:
    """The chunker as ingestion builds it by default (512 tokens, overlap 64, default minimum)."""
    return TokenChunker(
        real_tokenizer(), max_tokens=MAX, passage_prefix=PREFIX, chunk_tokens=512, overlap=64
    )


def test_short_section_between_long_ones_is_not_a_tiny_chunk() -> None:
    long_a = long_text("en", 1600, paragraph_every=4)
    long_b = long_text("de", 1600, paragraph_every=4)
    md = (
        f"# Library Guide\n\n## Lending\n\n{long_a}\n\n"
        "## Lost cards\n\nReport a lost card at the desk. A new one costs two euros.\n\n"
        f"## Ausleihe\n\n{long_b}\n"
    )
    c = product_chunker()
    chunks = c.split(doc(md, "markdown"))
    assert min(c.count(ch.text) for ch in chunks) >= 32  # the lost-cards section alone: 20
    lost = [ch for ch in chunks if "two euros" in ch.text]
    assert len(lost) == 1
    # the heading stays with the text it titles, and the chunk says where it starts
    assert lost[0].text.startswith("## Lost cards")
    assert lost[0].section == "Library Guide > Lost cards"
    assert "".join(ch.text for ch in chunks).count("two euros") == 1


def test_small_last_section_joins_the_previous_one() -> None:
    md = f"# Guide\n\n{long_text('en', 1200, paragraph_every=4)}\n\n## Contact\n\nCall us.\n"
    c = product_chunker()
    chunks = c.split(doc(md, "markdown"))
    assert len(chunks) == 1  # nothing follows the small section: it joins the one before
    assert chunks[0].text.startswith("# Guide") and chunks[0].text.endswith("Call us.")
    assert chunks[0].section == "Guide"


def test_short_document_stays_one_chunk() -> None:
    c = product_chunker()
    tiny = c.split(
        doc("# Hours\n\nOpen 9-5.\n\n## Phone\n\nCall 555.\n\n## Mail\n\nWrite.", "markdown")
    )
    assert len(tiny) == 1 and "Open 9-5." in tiny[0].text and "Write." in tiny[0].text
    assert tiny[0].section == "Hours"
    assert [ch.text for ch in c.split(doc("Closed today."))] == ["Closed today."]


def test_small_pieces_do_not_merge_across_pages() -> None:
    d = LoadedDocument("p", [Section("Seite eins.", page=1), Section("Seite zwei.", page=2)],
                       "plain", None)  # fmt: skip
    assert [(ch.text, ch.page) for ch in product_chunker().split(d)] == [
        ("Seite eins.", 1),
        ("Seite zwei.", 2),
    ]


def test_section_is_the_full_heading_path() -> None:
    body = long_text("en", 800)
    md = f"# Manual\n\n## Setup\n\n### Wiring\n\n#### Fuses\n\n{body}\n"
    chunks = product_chunker().split(doc(md, "markdown"))
    assert [ch.section for ch in chunks] == ["Manual > Setup > Wiring > Fuses"]


def test_html_boilerplate_never_becomes_a_chunk() -> None:
    """The issue's case: nav, cookie banner and footer are no chunk; the headings survive."""
    from ingestion.loaders import load_bytes
    from tests.test_loaders import BOILERPLATE_PAGE, BOILERPLATE_TEXTS

    chunks = product_chunker().split(load_bytes(BOILERPLATE_PAGE.encode(), "velo.html"))
    texts = "\n".join(ch.text for ch in chunks)
    for junk in BOILERPLATE_TEXTS:
        assert junk not in texts, junk
    for heading in ("# Louer un vélo en ville", "## Caution et paiement", "## Retour du vélo"):
        assert heading in texts
    assert {ch.section for ch in chunks} <= {
        "Louer un vélo en ville",
        "Louer un vélo en ville > Caution et paiement",
        "Louer un vélo en ville > Retour du vélo",
    }
