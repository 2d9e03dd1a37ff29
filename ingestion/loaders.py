"""Turn one file into text, or say clearly why not.

Every failure is a ``LoaderError`` with a human-readable ``reason`` so ingestion can
report per-file problems instead of crashing: ``SkippedFile`` means "not ours by
design" (unsupported type, binary), ``BrokenFile`` means "should have worked but
could not" (empty, damaged, encrypted, zip bomb, no text, too large).

Work per file is bounded: the file is read once (never through a symbolic link, never from a
FIFO or device), text formats decode only the prefix that can yield ``max_chars`` characters,
HTML markup is cut and docx XML refused above ``MARKUP_PER_CHAR * max_chars`` before parsing, and
PDF/docx extraction stops at ``max_chars``. What was cut is said in ``LoadedDocument.cut``.

HTML keeps only a page's main content (see `html_to_text`) and records its ``lang`` attribute.
A document's own web address, where it states one, is kept in ``LoadedDocument.url`` (see
`ingestion.doc_url`).
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import logging
import os
import re
import stat
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingestion.doc_url import front_matter, html_url

logger = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"}
)
_MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
_HTML_EXTENSIONS = frozenset({".html", ".htm"})

MAX_TITLE_CHARS = 120
BINARY_SNIFF_BYTES = 8 * 1024
MIB = 1024 * 1024
# Zip-bomb limits for .docx (a docx is a zip; python-docx would inflate it in memory).
DOCX_MAX_UNCOMPRESSED = 200 * MIB
DOCX_MAX_RATIO = 200
DOCX_RATIO_MIN_SIZE = 10 * MIB
DOCX_MAX_ENTRIES = 10_000
DEFAULT_MAX_CHARS = 2_000_000
# Markup (HTML, docx XML) allowed per extracted character before parsing is refused or cut.
MARKUP_PER_CHAR = 10
# Any character of any supported encoding takes at most this many bytes (UTF-8, GB18030, UTF-32).
_MAX_BYTES_PER_CHAR = 4

# Byte-order marks, longest first: the UTF-32 LE BOM starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
# When charset-normalizer scores several legacy encodings equally (common for short
# Western European text), prefer the ones that are far more common in the wild.
_PREFERRED_ENCODINGS: tuple[str, ...] = (
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1251",
    "koi8_r",
    "cp1250",
    "shift_jis",
    "cp932",
    "gb18030",
    "gbk",
    "big5",
    "euc_kr",
    "euc_jp",
)
# Titles that PDF producers write when the author set none (reportlab: "untitled").
_PLACEHOLDER_TITLES = frozenset({"untitled", "untitled document", "anonymous", "(anonymous)"})
_MD_HEADING_RE = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)
_DOCX_HEADING_RE = re.compile(r"^heading\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """A contiguous piece of a document; PDFs keep their page for citations."""

    text: str
    page: int | None = None  # 1-based PDF page number, else None


@dataclass(frozen=True)
class LoadedDocument:
    """Extracted text plus the metadata the chunker and citations need."""

    title: str
    sections: list[Section]
    markup: str  # "markdown" when '#' heading lines can guide splitting
    encoding: str | None  # detected encoding for text formats, None for pdf/docx
    cut: str = ""  # why and where the text was cut short ("" when complete)
    notes: tuple[str, ...] = ()  # guesses worth telling the user (encoding fallbacks)
    language: str = ""  # the language the file declares (HTML lang="..."), "" when none
    url: str = ""  # the document's own http(s) address (canonical, front matter), "" when none

    @property
    def text(self) -> str:
        """All sections joined, for callers that do not care about pages."""
        return "\n\n".join(s.text for s in self.sections)


class LoaderError(Exception):
    """Base error: the file produced no document; ``reason`` says why, for humans."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkippedFile(LoaderError):
    """Skipped by design (unsupported type, binary content): not worth a warning."""


class BrokenFile(LoaderError):
    """The file should have worked but could not be read: worth reporting."""


# --------------------------------------------------------------------------- text


def _normalise(text: str) -> str:
    """One newline convention, no stray BOM and no NUL, so downstream code stays simple."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.removeprefix("\ufeff")


def _best_legacy_match(data: bytes) -> tuple[str, str] | None:
    """Ask charset-normalizer, breaking exact ties in favour of common encodings."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    tied = [
        m
        for m in matches
        if abs(m.chaos - best.chaos) < 1e-9 and abs(m.coherence - best.coherence) < 1e-9
    ]
    for name in _PREFERRED_ENCODINGS:
        for m in tied:
            if m.encoding == name:
                return str(m), m.encoding
    return str(best), best.encoding


@dataclass(frozen=True)
class Decoded:
    """Text decoded from bytes: the encoding used, and whether the text was cut or guessed."""

    text: str
    encoding: str
    cut: bool = False
    notes: tuple[str, ...] = ()


def _decode_prefix(data: bytes, encoding: str, max_chars: int | None, errors: str) -> Decoded:
    """Decode only the bytes that can make ``max_chars`` characters (never a 50 MB string)."""
    if max_chars is None or len(data) <= max_chars:
        return Decoded(data.decode(encoding, errors), encoding)
    head = data[: max_chars * _MAX_BYTES_PER_CHAR]
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    text = decoder.decode(head, final=len(head) == len(data))
    cut = len(head) < len(data) or len(text) > max_chars
    return Decoded(text[:max_chars], encoding, cut)


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 text with no BOM: Latin text puts a NUL in every other byte, on one side only."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sample[0 : pairs * 2 : 2].count(0)
    odd = sample[1 : pairs * 2 : 2].count(0)
    if odd >= 0.3 * pairs and even <= 0.02 * pairs:
        return "utf-16-le"
    if even >= 0.3 * pairs and odd <= 0.02 * pairs:
        return "utf-16-be"
    return None


def _mostly_utf8(text: str) -> bool:
    """Text decoded as UTF-8 with replacement: more valid non-ASCII characters than bad bytes.

    Legacy 8-bit text (cp1252 "café", cp1251 Cyrillic) almost never forms valid multi-byte
    UTF-8 sequences by chance, so this only picks UTF-8 files damaged in a few places.
    """
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ch > "\x7f") - bad
    return good >= 1 and good >= bad


def _printable(text: str) -> bool:
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f")
    return controls <= 0.02 * max(len(text), 1)


def decode(data: bytes, max_chars: int | None = None) -> Decoded:
    """Decode bytes of unknown encoding, at most ``max_chars`` characters of them.

    Order: BOM, UTF-16 without BOM (NULs on one side of each byte pair), strict UTF-8, UTF-8
    with replacement when the bytes are mostly valid UTF-8 (said in ``notes``), then
    charset-normalizer for legacy 8-bit/CJK encodings. Other NUL bytes mean binary.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                got = _decode_prefix(
                    data[len(bom) :], encoding.removesuffix("-sig"), max_chars, "strict"
                )
            except UnicodeDecodeError as exc:
                raise BrokenFile(f"invalid {encoding} text: {exc}") from exc
            if "\x00" in got.text[:BINARY_SNIFF_BYTES]:
                raise SkippedFile("binary content")
            return Decoded(_normalise(got.text), encoding, got.cut)
    sample = data[:BINARY_SNIFF_BYTES]
    if b"\x00" in sample:
        utf16 = _utf16_without_bom(sample)
        if utf16 is None:
            raise SkippedFile("binary content")
        try:
            got = _decode_prefix(data, utf16, max_chars, "strict")
        except UnicodeDecodeError as exc:
            raise SkippedFile("binary content") from exc
        if not _printable(got.text[:BINARY_SNIFF_BYTES]):
            raise SkippedFile("binary content")
        note = f"no byte-order mark: read as {utf16}"
        return Decoded(_normalise(got.text), utf16, got.cut, (note,))
    try:
        got = _decode_prefix(data, "utf-8", max_chars, "strict")
        return Decoded(_normalise(got.text), "utf-8", got.cut)
    except UnicodeDecodeError:
        pass
    got = _decode_prefix(data, "utf-8", max_chars, "replace")
    if _mostly_utf8(got.text):
        bad = got.text.count("\ufffd")
        note = f"not valid UTF-8 in {bad} place(s): read as UTF-8, bad bytes replaced by U+FFFD"
        return Decoded(_normalise(got.text), "utf-8", got.cut, (note,))
    head = data if max_chars is None else data[: max_chars * _MAX_BYTES_PER_CHAR]
    match = _best_legacy_match(head)
    if match is None:
        raise BrokenFile("cannot detect text encoding")
    _, encoding = match
    got = _decode_prefix(data, encoding, max_chars, "replace")
    return Decoded(_normalise(got.text), encoding, got.cut)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding (all of them); returns ``(text, encoding_name)``."""
    got = decode(data)
    return got.text, got.encoding


def _first_line_title(text: str, fallback: str) -> str:
    """First non-empty line if it is short enough to be a title."""
    for line in text.split("\n"):
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else fallback
    return fallback


def _has_markdown_headings(text: str) -> bool:
    return _MD_HEADING_RE.search(text) is not None


def _converted(body: str, title: str, stem: str, encoding: str | None) -> LoadedDocument:
    """A document whose headings were rewritten as '#' lines (html, docx): markdown if any."""
    return LoadedDocument(
        title=title[:MAX_TITLE_CHARS] or stem,
        sections=[Section(body)],
        markup="markdown" if _has_markdown_headings(body) else "plain",
        encoding=encoding,
    )


def _load_plain(text: str, encoding: str, stem: str) -> LoadedDocument:
    return LoadedDocument(
        title=_first_line_title(text, stem),
        sections=[Section(text)],
        markup="plain",
        encoding=encoding,
    )


def _load_markdown(text: str, encoding: str, stem: str) -> LoadedDocument:
    title = ""
    for line in text.split("\n"):
        if line.startswith("# "):
            title = line[2:].strip().rstrip("#").strip()
            if title:
                break
    if not title:
        for line in text.split("\n"):
            candidate = line.strip().lstrip("#").strip()
            if candidate:
                title = candidate if len(candidate) <= MAX_TITLE_CHARS else stem
                break
    return LoadedDocument(
        title=title or stem, sections=[Section(text)], markup="markdown", encoding=encoding
    )


# --------------------------------------------------------------------------- html

_HTML_DROP = ("script", "style", "noscript", "template", "head", "svg")
# Site chrome, never the page's content: dropped before extraction (trafilatura falls back to
# the whole body on short pages, so it cannot be trusted to drop them there).
_HTML_CHROME = ("nav", "form", "menu", "dialog")
# Site chrome too, except inside <article> or <main>, where they hold an article's own parts.
_HTML_CHROME_OUTSIDE_MAIN = ("header", "footer", "aside")
# Above this much markup (scripts and styles dropped) trafilatura is skipped: its fallback
# extractors are quadratic (about 3 s at this size for a page of 5,000 tiny paragraphs).
MAIN_CONTENT_MAX_MARKUP = 150_000
_HTML_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "tfoot", "thead", "ul",
    }
)  # fmt: skip
_WS_RE = re.compile(r"\s+")


def _collapse(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


class _HtmlText:
    """Collects blocks of text; inline runs are joined, blocks separated by blank lines."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._cur: list[str] = []

    def add(self, text: str) -> None:
        self._cur.append(text)

    def flush(self) -> None:
        lines = (_collapse(line) for line in "".join(self._cur).split("\n"))
        block = "\n".join(line for line in lines if line)
        if block:
            self.blocks.append(block)
        self._cur.clear()

    def add_block(self, text: str) -> None:
        self.flush()
        if text:
            self.blocks.append(text)


def _walk_html(node: Any, out: _HtmlText, in_pre: bool = False) -> None:
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, CDATA, PIs
            continue
        if isinstance(child, NavigableString):
            text = str(child)
            out.add(text if in_pre else _WS_RE.sub(" ", text))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name in _HTML_HEADINGS:
            heading = _collapse(child.get_text())
            out.add_block("#" * _HTML_HEADINGS[name] + " " + heading if heading else "")
        elif name == "br":
            out.add("\n")
        elif name == "tr":
            cells = [_collapse(c.get_text(" ")) for c in child.find_all(["td", "th"])]
            out.add_block(" | ".join(c for c in cells if c))
        elif name in _HTML_BLOCKS:
            out.flush()
            if name == "li":
                out.add("- ")
            _walk_html(child, out, in_pre or name == "pre")
            out.flush()
        else:
            _walk_html(child, out, in_pre)


def _declared_language(soup: Any) -> str:
    """The page's own ``lang`` (or ``xml:lang``) attribute on <html>, as written."""
    root = soup.find("html")
    if root is None:
        return ""
    value = root.get("lang") or root.get("xml:lang") or ""
    return _collapse(value if isinstance(value, str) else " ".join(value))[:35]


def _main_text(markup: str) -> str | None:
    """The page's main content as plain text (trafilatura), or None if it found none.

    ``favor_recall`` keeps lists and short sections that the precise mode drops on plain pages;
    trafilatura never fetches anything when given a string.
    """
    import trafilatura

    return trafilatura.extract(
        markup,
        output_format="txt",
        favor_recall=True,
        include_comments=False,
        include_tables=True,
        include_formatting=False,
        include_links=False,
        include_images=False,
        deduplicate=False,
        with_metadata=False,
    )


def _in_main(block: str, lines: set[str], main: str) -> bool:
    """Every line (or table cell) of a walked block occurs in the extracted main text."""
    for line in block.split("\n"):
        for cell in line.removeprefix("- ").split(" | "):
            cell = cell.strip()
            if cell and cell not in lines and cell not in main:
                return False
    return True


def _keep_main(blocks: list[str], main: str) -> list[str]:
    """The walked blocks that belong to the main text, each heading kept with its text.

    Walking the page ourselves keeps its structure ('#' headings, list items, table rows),
    which trafilatura's own output flattens on short pages; trafilatura only chooses. A heading
    stays when some text under it (before the next heading of its level or higher) stays.
    """
    main_lines = {_collapse(line) for line in main.split("\n")}
    flat = _collapse(main)
    keep = [not b.startswith("#") and _in_main(b, main_lines, flat) for b in blocks]
    levels = [len(b) - len(b.lstrip("#")) if b.startswith("#") else 0 for b in blocks]
    below: list[int] = []  # open headings (indexes), innermost last
    for i, level in enumerate(levels):
        if level:
            while below and levels[below[-1]] >= level:
                below.pop()
            below.append(i)
        elif keep[i]:
            for j in below:
                keep[j] = True
    return [b for b, k in zip(blocks, keep, strict=True) if k]


def _blocks(node: Any) -> list[str]:
    out = _HtmlText()
    _walk_html(node, out)
    out.flush()
    return out.blocks


def _drop_chrome(soup: Any) -> None:
    for tag in soup.find_all(_HTML_CHROME):
        tag.decompose()
    for tag in soup.find_all(_HTML_CHROME_OUTSIDE_MAIN):
        if not tag.decomposed and tag.find_parent(["article", "main"]) is None:
            tag.decompose()


@dataclass(frozen=True)
class HtmlPage:
    """What an HTML page yields: main text ('#' headings), title, declared language and address."""

    text: str
    title: str
    language: str = ""
    url: str = ""


def html_to_text(html: str) -> HtmlPage:
    """Main content of an HTML page as markdown-ish text, with its title and ``lang``.

    Navigation, headers, footers, cookie banners, menus and sidebars would otherwise become
    chunks that win unrelated searches, so trafilatura picks the main content. Its fallback
    extractors take time quadratic in the number of blocks, so pages with more than
    ``MAIN_CONTENT_MAX_MARKUP`` characters of markup (after scripts and styles are dropped), and
    pages where it keeps nothing (very short ones), keep the whole walk. Either way the
    elements that are site chrome by definition (nav, forms, menus; headers, footers and
    asides outside the article) are removed first. Only parsed text is kept (never raw
    markup), so escaped ``&lt;tag&gt;`` becomes literal text and ``<script>`` content is dropped.
    """
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(html, "lxml")
    language = _declared_language(soup)
    url = html_url(soup)  # in <head>, which is dropped below
    title = ""
    if soup.title is not None:
        title = _collapse(soup.title.get_text())
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    if not title:
        h1 = soup.find("h1")
        if h1 is not None:
            title = _collapse(h1.get_text())
    _drop_chrome(soup)
    kept: list[str] = []
    if len(html) <= MAIN_CONTENT_MAX_MARKUP * 4:  # cheap guard before serialising
        for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
            comment.extract()
        cleaned = str(soup)
        if len(cleaned) <= MAIN_CONTENT_MAX_MARKUP:
            try:
                main = _main_text(cleaned)
            except RecursionError:
                raise
            except Exception as exc:  # a trafilatura bug must not lose the page: walk it all
                logger.warning("main-content extraction failed, using the whole page: %r", exc)
                main = None
            if main and main.strip():
                kept = _keep_main(_blocks(soup), main)
    if not any(not b.startswith("#") for b in kept):
        kept = _blocks(soup)
    return HtmlPage("\n\n".join(kept), title, language, url)


def _load_html(text: str, encoding: str, stem: str) -> LoadedDocument:
    try:
        page = html_to_text(text)
    except RecursionError as exc:
        raise BrokenFile("HTML nested too deeply") from exc
    doc = _converted(page.text, page.title, stem, encoding)
    return dataclasses.replace(doc, language=page.language, url=page.url)


# --------------------------------------------------------------------------- pdf


def _load_pdf(data: bytes, stem: str, max_chars: int) -> LoadedDocument:
    from pypdf import PdfReader

    pypdf_logger = logging.getLogger("pypdf")
    old_level = pypdf_logger.level
    pypdf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                reader = PdfReader(io.BytesIO(data), strict=False)
                if reader.is_encrypted:
                    try:
                        decrypted = bool(reader.decrypt(""))
                    except Exception:  # wrong password, or AES without `cryptography`
                        decrypted = False
                    if not decrypted:
                        raise BrokenFile("encrypted PDF")
                sections: list[Section] = []
                chars, cut = 0, ""
                pages = len(reader.pages)
                for number, page in enumerate(reader.pages, start=1):
                    if chars >= max_chars:
                        cut = f"text cut at {max_chars} characters (page {number - 1} of {pages})"
                        break
                    page_text = _normalise(page.extract_text() or "").strip()
                    page_text = page_text[: max_chars - chars]
                    chars += len(page_text)
                    if page_text:
                        sections.append(Section(page_text, page=number))
                meta_title = ""
                metadata = reader.metadata
                if metadata is not None and metadata.title:
                    meta_title = _collapse(str(metadata.title))
                if meta_title.lower() in _PLACEHOLDER_TITLES:
                    meta_title = ""
            except LoaderError:
                raise
            except Exception as exc:
                raise BrokenFile(f"damaged or truncated PDF: {exc}") from exc
    finally:
        pypdf_logger.setLevel(old_level)
    if not sections:
        raise BrokenFile("no extractable text (scanned or damaged PDF)")
    title = meta_title[:MAX_TITLE_CHARS] or _first_line_title(sections[0].text, stem)
    return LoadedDocument(title=title, sections=sections, markup="plain", encoding=None, cut=cut)


# --------------------------------------------------------------------------- docx


def _check_docx_zip(data: bytes, max_chars: int) -> None:
    """Refuse bad zips, zip bombs and oversized XML before python-docx inflates anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise BrokenFile("not a valid .docx (bad zip)") from exc
    total = sum(info.file_size for info in infos)
    bomb = total > DOCX_MAX_UNCOMPRESSED or len(infos) > DOCX_MAX_ENTRIES
    for info in infos:
        if info.file_size > DOCX_RATIO_MIN_SIZE and (
            info.compress_size == 0 or info.file_size / info.compress_size > DOCX_MAX_RATIO
        ):
            bomb = True
    if bomb:
        raise BrokenFile(
            f"suspicious .docx: looks like a zip bomb ({total // MIB} MB uncompressed)"
        )
    xml_limit = MARKUP_PER_CHAR * max_chars
    for info in infos:
        if info.filename == "word/document.xml" and info.file_size > xml_limit:
            raise BrokenFile(
                f".docx body XML is {info.file_size / MIB:.1f} MB, over the "
                f"{xml_limit / MIB:.1f} MB limit ({MARKUP_PER_CHAR} x max characters)"
            )


def _docx_blocks(doc: Any) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, text)`` in document order; kind is "title", "heading" or "body"."""
    from docx.table import Table

    style_names: dict[str | None, str] = {}
    for item in doc.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                seen: set[int] = set()
                cells: list[str] = []
                for cell in row.cells:  # merged cells repeat; keep each once
                    if id(cell._tc) in seen:
                        continue
                    seen.add(id(cell._tc))
                    text = _collapse(cell.text)
                    if text:
                        cells.append(text)
                if cells:
                    yield "body", " | ".join(cells)
            continue
        text = item.text.strip()
        if not text:
            continue
        style_id = item._p.style  # python-docx scans every style for each unstyled paragraph
        if style_id not in style_names:
            try:
                style_names[style_id] = (item.style.name or "") if item.style is not None else ""
            except Exception:  # a style id that the styles part does not define
                style_names[style_id] = ""
        style_name = style_names[style_id]
        if style_name == "Title":
            yield "title", "# " + _collapse(text)
            continue
        match = _DOCX_HEADING_RE.match(style_name)
        if match:
            level = min(max(int(match.group(1)), 1), 6)
            yield "heading", "#" * level + " " + _collapse(text)
        else:
            yield "body", text


def _load_docx(data: bytes, stem: str, max_chars: int) -> LoadedDocument:
    _check_docx_zip(data, max_chars)
    blocks: list[tuple[str, str]] = []
    cut = ""
    try:
        import docx

        doc = docx.Document(io.BytesIO(data))
        chars = 0
        for kind, text in _docx_blocks(doc):
            if chars >= max_chars:
                cut = f"text cut at {max_chars} characters"
                break
            blocks.append((kind, text[: max_chars - chars]))
            chars += len(text) + 2
        core_title = (doc.core_properties.title or "").strip()
    except LoaderError:
        raise
    except Exception as exc:
        raise BrokenFile(f"damaged .docx: {exc}") from exc
    title = _collapse(core_title)
    if not title:
        for kind, text in blocks:
            if kind in ("title", "heading"):
                title = text.lstrip("#").strip()
                break
    body = _normalise("\n\n".join(text for _, text in blocks))
    return dataclasses.replace(_converted(body, title, stem, None), cut=cut)


# --------------------------------------------------------------------------- entry


def read_file(path: Path, max_bytes: int) -> bytes:
    """All bytes of a regular file, read once: no symbolic link, FIFO or device is opened
    for reading, and a file that grows past ``max_bytes`` while read is refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise SkippedFile("symbolic link: not followed") from exc
        raise BrokenFile(f"cannot read file: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SkippedFile("not a regular file")
        if info.st_size > max_bytes:
            raise BrokenFile(f"larger than {max_bytes / MIB:g} MB")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise BrokenFile(f"cannot read file: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise BrokenFile(f"larger than {max_bytes / MIB:g} MB")
    return data


def check_extension(name: str) -> str:
    """The lower-cased extension of a supported file name, else ``SkippedFile``."""
    ext = Path(name).suffix.lower()
    if not ext:
        raise SkippedFile("unsupported file type (no extension)")
    if ext not in SUPPORTED_EXTENSIONS:
        raise SkippedFile(f"unsupported file type '{ext}'")
    return ext


def load_bytes(data: bytes, name: str, max_chars: int = DEFAULT_MAX_CHARS) -> LoadedDocument:
    """Extract text from the bytes of a file called ``name`` (its extension picks the format).

    Callers that hash the file hash these same bytes, so the stored text and its hash always
    belong to one version of a file that may change while it is ingested.
    """
    ext = check_extension(name)
    if not data:
        raise BrokenFile("empty file")
    stem = Path(name).stem
    limit = max_chars
    if ext == ".pdf":
        doc = _load_pdf(data, stem, max_chars)
    elif ext == ".docx":
        doc = _load_docx(data, stem, max_chars)
    else:
        markup = ext in _HTML_EXTENSIONS
        limit = max_chars * MARKUP_PER_CHAR if markup else max_chars
        got = decode(data, limit)
        if markup:
            doc = _load_html(got.text, got.encoding, stem)
        else:
            matter = front_matter(got.text)
            load = _load_markdown if ext in _MARKDOWN_EXTENSIONS else _load_plain
            doc = dataclasses.replace(load(matter.body, got.encoding, stem), url=matter.url)
        cut = f"text cut at {limit} {'characters of markup' if markup else 'characters'}"
        doc = dataclasses.replace(doc, cut=cut if got.cut else "", notes=got.notes)
    if len(doc.text) > max_chars:  # html text, after markup was already bounded
        text = doc.text[:max_chars]
        cut = "; ".join(c for c in (doc.cut, f"text cut at {max_chars} characters") if c)
        doc = dataclasses.replace(doc, sections=[Section(text)], cut=cut)
    if not any(section.text.strip() for section in doc.sections):
        raise BrokenFile("no extractable text")
    return doc


def load_file(
    path: Path, max_bytes: int = 50 * MIB, max_chars: int = DEFAULT_MAX_CHARS
) -> LoadedDocument:
    """Extract text from one supported file, raising ``LoaderError`` with a reason."""
    path = Path(path)
    check_extension(path.name)
    return load_bytes(read_file(path, max_bytes), path.name, max_chars)
