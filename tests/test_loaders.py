"""Loader and language-detection tests: every supported format, encoding and failure mode."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from ingestion.language import detect_language
from ingestion.loaders import (
    SUPPORTED_EXTENSIONS,
    BrokenFile,
    LoaderError,
    SkippedFile,
    decode_text,
    load_file,
)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- encodings

TEXT = "Grüße aus Köln\nZweite Zeile — mit Ümlauten und 日本語."


def test_supported_extensions() -> None:
    expected = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"}
    assert set(SUPPORTED_EXTENSIONS) == expected


def test_utf8(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "a.txt", TEXT.encode("utf-8")))
    assert doc.encoding == "utf-8"
    assert doc.sections[0].text == TEXT
    assert doc.sections[0].page is None
    assert doc.title == "Grüße aus Köln"
    assert doc.markup == "plain"


def test_utf8_bom(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "a.txt", b"\xef\xbb\xbf" + TEXT.encode("utf-8")))
    assert doc.encoding == "utf-8-sig"
    assert doc.sections[0].text == TEXT
    assert not doc.sections[0].text.startswith("\ufeff")


def test_utf16_le_bom(tmp_path: Path) -> None:
    data = b"\xff\xfe" + TEXT.replace("\n", "\r\n").encode("utf-16-le")
    doc = load_file(_write(tmp_path, "a.txt", data))
    assert doc.encoding == "utf-16-le"
    assert doc.sections[0].text == TEXT  # CRLF normalised too


def test_utf16_be_bom(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "a.txt", b"\xfe\xff" + TEXT.encode("utf-16-be")))
    assert doc.encoding == "utf-16-be"
    assert doc.sections[0].text == TEXT


def test_utf32_le_bom() -> None:
    text, encoding = decode_text(b"\xff\xfe\x00\x00" + TEXT.encode("utf-32-le"))
    assert (text, encoding) == (TEXT, "utf-32-le")


def test_cp1252_legacy(tmp_path: Path) -> None:
    original = "Café crème brûlée à la française, déjà vu"
    doc = load_file(_write(tmp_path, "fr.txt", original.encode("cp1252")))
    assert doc.sections[0].text == original
    assert doc.encoding == "cp1252"


def test_cp1251_russian(tmp_path: Path) -> None:
    original = "Привет, как дела? Это простой русский текст для проверки кодировки."
    doc = load_file(_write(tmp_path, "ru.txt", original.encode("cp1251")))
    assert doc.sections[0].text == original


def test_binary_txt_is_skipped(tmp_path: Path) -> None:
    data = b"hello\x00\x01\x02\xff\xfe binary" * 50
    with pytest.raises(SkippedFile) as err:
        load_file(_write(tmp_path, "blob.txt", b"\x89PNG\r\n" + data))
    assert err.value.reason == "binary content"


def test_zero_bytes_is_broken(tmp_path: Path) -> None:
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "empty.txt", b""))
    assert "empty" in err.value.reason


def test_whitespace_only_is_broken(tmp_path: Path) -> None:
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "blank.md", b"  \n\n\t \n"))
    assert err.value.reason == "no extractable text"


def test_too_large_is_broken(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.txt", b"x" * 2048)
    with pytest.raises(BrokenFile) as err:
        load_file(path, max_bytes=1024)
    assert "larger than" in err.value.reason


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(SkippedFile) as err:
        load_file(_write(tmp_path, "data.XYZ", b"hello"))
    assert err.value.reason == "unsupported file type '.xyz'"
    with pytest.raises(SkippedFile) as err2:
        load_file(_write(tmp_path, "Makefile", b"all:"))
    assert err2.value.reason == "unsupported file type (no extension)"
    assert isinstance(err2.value, LoaderError)


# --------------------------------------------------------------------------- html / md

HTML = """<!doctype html>
<html><head><title>My   Page</title><style>body { color: red }</style></head>
<body>
<script>alert(1)</script>
<h1>Main heading</h1>
<p>First    paragraph
   spans lines.</p>
<h2>Sub <em>heading</em></h2>
<p>Escaped: &lt;img src=x onerror=alert(1)&gt; stays text.</p>
<noscript>enable js</noscript>
<ul><li>one</li><li>two</li></ul>
</body></html>
"""


def test_html(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "page.html", HTML.encode("utf-8")))
    text = doc.sections[0].text
    assert doc.title == "My Page"
    assert doc.markup == "markdown"
    assert "# Main heading" in text.split("\n")
    assert "## Sub heading" in text.split("\n")
    assert "First paragraph spans lines." in text
    assert "<img src=x onerror=alert(1)>" in text
    assert "alert(1)</script>" not in text
    assert "<script>" not in text
    assert "alert(1)\n" not in text and not text.startswith("alert")
    assert text.count("alert(1)") == 1  # only the escaped, visible one
    assert "color: red" not in text
    assert "enable js" not in text
    assert "- one" in text and "- two" in text
    # blocks are separated by blank lines
    assert "# Main heading\n\nFirst paragraph spans lines." in text


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    html = b"<html><body><h1>Only H1</h1><p>Body</p></body></html>"
    doc = load_file(_write(tmp_path, "x.htm", html))
    assert doc.title == "Only H1"


def test_markdown_title(tmp_path: Path) -> None:
    md = "Some preface\n\n# Real Title\n\nText here.\n\n## Section\n\nMore."
    doc = load_file(_write(tmp_path, "notes.md", md.encode("utf-8")))
    assert doc.title == "Real Title"
    assert doc.markup == "markdown"
    assert doc.sections[0].text == md


def test_markdown_without_heading_uses_first_line(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "notes.markdown", b"## Deeper\n\nbody"))
    assert doc.title == "Deeper"
    assert doc.markup == "markdown"


def test_txt_long_first_line_uses_stem(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "my-notes.txt", ("word " * 40).encode()))
    assert doc.title == "my-notes"


# --------------------------------------------------------------------------- pdf


def _pdf_bytes(title: str | None = "Quarterly Report") -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=True)  # byte-identical output every run
    if title:
        c.setTitle(title)
    c.drawString(72, 720, "Page one talks about apples.")
    c.showPage()
    c.drawString(72, 720, "Page two talks about oranges.")
    c.showPage()
    c.save()
    return buf.getvalue()


def test_pdf_pages_and_title(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "r.pdf", _pdf_bytes()))
    assert doc.title == "Quarterly Report"
    assert [s.page for s in doc.sections] == [1, 2]
    assert "apples" in doc.sections[0].text
    assert "oranges" in doc.sections[1].text
    assert doc.encoding is None
    assert doc.markup == "plain"


def test_pdf_title_falls_back_to_first_line(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "r.pdf", _pdf_bytes(title=None)))
    assert doc.title == "Page one talks about apples."


def test_truncated_pdf_is_broken(tmp_path: Path) -> None:
    data = _pdf_bytes()
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "cut.pdf", data[: int(len(data) * 0.4)]))
    assert "PDF" in err.value.reason


def test_garbage_pdf_is_broken(tmp_path: Path) -> None:
    data = b"%PDF-1.4\n" + bytes(range(256)) * 20
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "junk.pdf", data))
    assert "PDF" in err.value.reason


def test_encrypted_pdf_is_broken(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf_bytes())))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "locked.pdf", buf.getvalue()))
    assert err.value.reason == "encrypted PDF"


def test_pdf_with_empty_owner_password_only_opens(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf_bytes())))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    doc = load_file(_write(tmp_path, "perm.pdf", buf.getvalue()))
    assert [s.page for s in doc.sections] == [1, 2]


# --------------------------------------------------------------------------- docx


def _docx(path: Path, core_title: str | None = None) -> Path:
    import docx

    d = docx.Document()
    if core_title:
        d.core_properties.title = core_title
    d.add_heading("Employee Handbook", level=0)  # style "Title"
    d.add_heading("Holidays", level=1)
    d.add_paragraph("You get thirty days of leave.")
    d.add_heading("Details", level=2)
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Grade"
    table.cell(0, 1).text = "Days"
    table.cell(1, 0).text = "Senior"
    table.cell(1, 1).text = "35"
    d.add_paragraph("Closing words.")
    d.save(str(path))
    return path


def test_docx(tmp_path: Path) -> None:
    doc = load_file(_docx(tmp_path / "hb.docx"))
    text = doc.sections[0].text
    lines = text.split("\n")
    assert doc.title == "Employee Handbook"
    assert doc.markup == "markdown"
    assert doc.encoding is None
    assert "# Employee Handbook" in lines
    assert "# Holidays" in lines
    assert "## Details" in lines
    assert "You get thirty days of leave." in lines
    assert "Grade | Days" in lines
    assert "Senior | 35" in lines
    # document order: table sits between the "Details" heading and the closing paragraph
    assert text.index("## Details") < text.index("Senior | 35") < text.index("Closing words.")


def test_docx_core_title_wins(tmp_path: Path) -> None:
    doc = load_file(_docx(tmp_path / "hb.docx", core_title="HR Policies 2024"))
    assert doc.title == "HR Policies 2024"


def test_docx_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "x.docx"
    block = b"\x00" * (1024 * 1024)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("word/document.xml", "w", force_zip64=True) as entry,
    ):
        for _ in range(300):
            entry.write(block)
    assert path.stat().st_size < 5 * 1024 * 1024
    start = time.monotonic()
    with pytest.raises(BrokenFile) as err:
        load_file(path)
    assert time.monotonic() - start < 2.0
    assert "zip bomb" in err.value.reason
    assert "300 MB" in err.value.reason


def test_docx_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(BrokenFile) as err:
        load_file(_write(tmp_path, "fake.docx", b"This is plain text, not a zip archive."))
    assert err.value.reason == "not a valid .docx (bad zip)"


def test_docx_zip_without_document_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "hollow.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(BrokenFile) as err:
        load_file(path)
    assert err.value.reason.startswith("damaged .docx:")


# --------------------------------------------------------------------------- language

SAMPLES = {
    "en": "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.",
    "de": "Der schnelle braune Fuchs springt über den faulen Hund. Heute ist ein schöner Tag.",
    "es": "El rápido zorro marrón salta sobre el perro perezoso. Hoy hace un día muy bonito.",
    "fr": "Le renard brun rapide saute par-dessus le chien paresseux. Il fait beau aujourd'hui.",
    "zh": "敏捷的棕色狐狸跳过了懒狗。今天天气很好。我们去公园散步吧。",
    "ja": "素早い茶色の狐が怠け者の犬を飛び越えた。今日はいい天気ですね。",
    "ar": "الثعلب البني السريع يقفز فوق الكلب الكسول. الطقس جميل اليوم في الحديقة.",
    "ru": "Быстрая коричневая лиса прыгает через ленивую собаку. Сегодня хорошая погода.",
    "hi": "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। आज मौसम बहुत अच्छा है।",
    "th": "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ วันนี้อากาศดีมาก",
}


@pytest.mark.parametrize(("expected", "text"), sorted(SAMPLES.items()))
def test_detect_language(expected: str, text: str) -> None:
    assert detect_language(text) == expected


def test_detect_language_undetermined() -> None:
    assert detect_language("") == "und"
    assert detect_language("12345 !!! 678") == "und"
    assert detect_language("hello") == "und"


def test_detect_language_samples_middle_of_long_text() -> None:
    header = "Copyright notice. All rights reserved. " * 10  # ~390 chars of English
    body = "Der schnelle braune Fuchs springt über den faulen Hund. " * 200
    assert detect_language(header + body) == "de"


# --------------------------------------------------------------------------- hardening (issue 7)


def test_utf8_with_a_few_bad_bytes_stays_utf8(tmp_path: Path) -> None:
    data = "Le café crème coûte trois euros à la gare.".encode() + b"\xff\xfe!"
    doc = load_file(_write(tmp_path, "bad.txt", data))
    assert "café crème" in doc.text  # today: cp1251, "cafГ© crГЁme"
    assert doc.encoding == "utf-8"
    assert any("U+FFFD" in note for note in doc.notes)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_text_not_binary(tmp_path: Path, encoding: str) -> None:
    text = "The tram depot is open on Sundays from ten to four."
    doc = load_file(_write(tmp_path, "u16.txt", text.encode(encoding)))
    assert doc.text == text and doc.encoding == encoding
    assert any(encoding in note for note in doc.notes)


def test_text_is_cut_at_max_chars(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "line.txt", b"abcdefghij" * 100_000), max_chars=5000)
    assert len(doc.text) == 5000 and "5000 characters" in doc.cut


def test_html_markup_is_cut_before_parsing(tmp_path: Path) -> None:
    html = b"<p>" + b"<b>word</b> " * 10_000 + b"</p><p>FINAL</p>"
    doc = load_file(_write(tmp_path, "big.html", html), max_chars=1000)
    assert len(doc.text) <= 1000 and "FINAL" not in doc.text and doc.cut


def test_docx_with_oversized_xml_is_refused_unparsed(tmp_path: Path) -> None:
    from tests.test_hostile_files import _docx_with_body

    data = _docx_with_body("<w:p><w:r><w:t>word</w:t></w:r></w:p>" * 5000)  # ~190 KB of XML
    with pytest.raises(BrokenFile, match="over the"):
        load_file(_write(tmp_path, "x.docx", data), max_chars=10_000)


def test_docx_text_is_cut_at_max_chars(tmp_path: Path) -> None:
    from tests.test_hostile_files import _docx

    data = _docx(*[f"Paragraph {i} about the ferry timetable." for i in range(100)])
    doc = load_file(_write(tmp_path, "x.docx", data), max_chars=2000)
    assert len(doc.text) <= 2000 and doc.cut


def test_symlink_is_never_opened(tmp_path: Path) -> None:
    secret = _write(tmp_path, "secret.txt", b"root:x:0:0")
    link = tmp_path / "link.txt"
    link.symlink_to(secret)
    with pytest.raises(SkippedFile, match="symbolic link"):
        load_file(link)


@pytest.mark.timeout(20)
def test_fifo_is_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(SkippedFile, match="not a regular file"):
        load_file(tmp_path / "pipe.txt")  # today: blocks forever waiting for a writer


# --------------------------------------------------------------------------- html main content

BOILERPLATE_PAGE = """<!doctype html>
<html lang="fr-FR"><head><meta charset="utf-8"><title>Location de vélos – Vélo Ville</title></head>
<body>
<header><div class="logo">Vélo Ville</div><nav>Accueil | Contact</nav></header>
<div id="cookie-banner" class="cookie-consent">Nous utilisons des cookies pour améliorer votre
expérience. <button>Accepter tous les cookies</button></div>
<aside class="sidebar"><ul><li><a href="/promo">Promotions du mois</a></li>
<li><a href="/blog">Notre blog</a></li></ul></aside>
<main><article>
<h1>Louer un vélo en ville</h1>
<p>Nos vélos se louent à l'heure, à la journée ou à la semaine dans chacune de nos trois
boutiques du centre. Chaque location comprend un casque, un antivol et une assistance.</p>
<h2>Caution et paiement</h2>
<p>Une caution de 150 euros est demandée au départ de la location, par carte bancaire ou en
espèces. Elle est rendue intégralement au retour du vélo s'il n'est pas endommagé.</p>
<h2>Retour du vélo</h2>
<p>Le vélo doit être rendu avant 19 heures à la boutique de départ ou dans une autre boutique
du réseau. Un retard de plus d'une heure est facturé comme une heure supplémentaire.</p>
<ul><li>Boutique Gare</li><li>Boutique Marché</li></ul>
</article></main>
<footer><p>© 2024 Vélo Ville – Mentions légales – Plan du site</p></footer>
</body></html>
"""
BOILERPLATE_TEXTS = ("Accueil", "Contact", "cookies", "Mentions légales", "Promotions", "blog")


def test_html_keeps_main_content_only(tmp_path: Path) -> None:
    doc = load_file(_write(tmp_path, "velo.html", BOILERPLATE_PAGE.encode("utf-8")))
    text = doc.text
    for junk in BOILERPLATE_TEXTS:
        assert junk not in text, junk
    lines = text.split("\n")
    assert lines[0] == "# Louer un vélo en ville"
    assert "## Caution et paiement" in lines and "## Retour du vélo" in lines
    assert "- Boutique Gare" in lines  # structure survives, not just the paragraphs
    assert doc.markup == "markdown"
    assert doc.title == "Location de vélos – Vélo Ville"
    assert doc.language == "fr-FR"


def test_short_html_page_without_main_content_falls_back_to_the_walk(tmp_path: Path) -> None:
    html = "<html><body><nav>Home | Shop</nav><h1>Hours</h1><p>Open 9-5.</p></body></html>"
    doc = load_file(_write(tmp_path, "short.html", html.encode()))
    assert "Open 9-5." in doc.text and "# Hours" in doc.text.split("\n")
    assert "Shop" not in doc.text
    assert doc.language == ""


def test_large_html_page_skips_trafilatura_but_drops_boilerplate(tmp_path: Path) -> None:
    from ingestion.loaders import MAIN_CONTENT_MAX_MARKUP

    body = "".join(
        f"<p>Paragraph {i} of a long manual about bicycle maintenance.</p>" for i in range(4000)
    )
    html = f"<html><body><nav>Accueil | Contact</nav>{body}<footer>Mentions</footer></body></html>"
    assert len(html) > MAIN_CONTENT_MAX_MARKUP
    doc = load_file(_write(tmp_path, "big.html", html.encode()))
    assert "Paragraph 3999 of" in doc.text
    assert "Accueil" not in doc.text and "Mentions" not in doc.text
