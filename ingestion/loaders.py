"""Turn one file into text, or say clearly why not.

Every failure is a ``LoaderError`` with a human-readable ``reason`` so ingestion can
report per-file problems instead of crashing: ``SkippedFile`` means "not ours by
design" (unsupported type, binary), ``BrokenFile`` means "should have worked but
could not" (empty, damaged, encrypted, zip bomb, no text, too large).
"""

from __future__ import annotations

import logging
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """One newline convention and no stray BOM, so downstream code stays simple."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
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


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; returns ``(text, encoding_name)``.

    Order: BOM, strict UTF-8, then charset-normalizer for legacy 8-bit/CJK encodings.
    A NUL byte (outside BOM-marked UTF-16/32) means binary: ``SkippedFile``.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding.removesuffix("-sig"))
            except UnicodeDecodeError as exc:
                raise BrokenFile(f"invalid {encoding} text: {exc}") from exc
            if "\x00" in text[:BINARY_SNIFF_BYTES]:
                raise SkippedFile("binary content")
            return _normalise(text), encoding
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise SkippedFile("binary content")
    try:
        return _normalise(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    match = _best_legacy_match(data)
    if match is None:
        raise BrokenFile("cannot detect text encoding")
    text, encoding = match
    return _normalise(text), encoding


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

_HTML_DROP = ("script", "style", "noscript", "template", "head")
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


def html_to_text(html: str) -> tuple[str, str]:
    """Visible text of an HTML page as markdown-ish text; returns ``(text, title)``.

    Uses parsed text only (never raw markup), so escaped ``&lt;tag&gt;`` becomes
    literal text and real ``<script>`` content is dropped.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title = ""
    if soup.title is not None:
        title = _collapse(soup.title.get_text())
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    if not title:
        h1 = soup.find("h1")
        if h1 is not None:
            title = _collapse(h1.get_text())
    out = _HtmlText()
    _walk_html(soup, out)
    out.flush()
    return "\n\n".join(out.blocks), title


def _load_html(text: str, encoding: str, stem: str) -> LoadedDocument:
    body, title = html_to_text(text)
    return _converted(body, title, stem, encoding)


# --------------------------------------------------------------------------- pdf


def _load_pdf(path: Path, stem: str) -> LoadedDocument:
    from pypdf import PdfReader

    pypdf_logger = logging.getLogger("pypdf")
    old_level = pypdf_logger.level
    pypdf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                reader = PdfReader(path, strict=False)
                if reader.is_encrypted:
                    try:
                        decrypted = bool(reader.decrypt(""))
                    except Exception:  # wrong password, or AES without `cryptography`
                        decrypted = False
                    if not decrypted:
                        raise BrokenFile("encrypted PDF")
                sections: list[Section] = []
                for number, page in enumerate(reader.pages, start=1):
                    page_text = _normalise(page.extract_text() or "").strip()
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
    return LoadedDocument(title=title, sections=sections, markup="plain", encoding=None)


# --------------------------------------------------------------------------- docx


def _check_docx_zip(path: Path) -> None:
    """Refuse bad zips and zip bombs before python-docx inflates anything."""
    try:
        with zipfile.ZipFile(path) as zf:
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


def _docx_blocks(doc: Any) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, text)`` in document order; kind is "title", "heading" or "body"."""
    from docx.table import Table

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
        style_name = ""
        try:
            style_name = (item.style.name or "") if item.style is not None else ""
        except Exception:  # a style id that the styles part does not define
            style_name = ""
        if style_name == "Title":
            yield "title", "# " + _collapse(text)
            continue
        match = _DOCX_HEADING_RE.match(style_name)
        if match:
            level = min(max(int(match.group(1)), 1), 6)
            yield "heading", "#" * level + " " + _collapse(text)
        else:
            yield "body", text


def _load_docx(path: Path, stem: str) -> LoadedDocument:
    _check_docx_zip(path)
    try:
        import docx

        doc = docx.Document(str(path))
        blocks = list(_docx_blocks(doc))
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
    return _converted(body, title, stem, None)


# --------------------------------------------------------------------------- entry


def load_file(path: Path, max_bytes: int = 50 * MIB) -> LoadedDocument:
    """Extract text from one supported file, raising ``LoaderError`` with a reason."""
    path = Path(path)
    ext = path.suffix.lower()
    if not ext:
        raise SkippedFile("unsupported file type (no extension)")
    if ext not in SUPPORTED_EXTENSIONS:
        raise SkippedFile(f"unsupported file type '{ext}'")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BrokenFile(f"cannot read file: {exc}") from exc
    if size == 0:
        raise BrokenFile("empty file")
    if size > max_bytes:
        raise BrokenFile(f"file is larger than the {max_bytes / MIB:g} MB limit")
    stem = path.stem

    if ext == ".pdf":
        doc = _load_pdf(path, stem)
    elif ext == ".docx":
        doc = _load_docx(path, stem)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BrokenFile(f"cannot read file: {exc}") from exc
        text, encoding = decode_text(data)
        if ext in _MARKDOWN_EXTENSIONS:
            doc = _load_markdown(text, encoding, stem)
        elif ext in _HTML_EXTENSIONS:
            doc = _load_html(text, encoding, stem)
        else:
            doc = _load_plain(text, encoding, stem)

    if not any(section.text.strip() for section in doc.sections):
        raise BrokenFile("no extractable text")
    return doc
