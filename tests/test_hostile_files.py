"""Hostile-file suite: one folder of malformed, oversized, looping and sneaky files, one ingest.

The ingest must finish, report every bad file with a reason, index the good files (searchable),
and never open anything outside the folder (an audit hook records every `open`). Real loaders,
tokenizer, chunker, manifest and Chroma; only the embedder is the fast fake.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.ingest import ingest_folder
from app.settings import load_settings
from ingestion.sync import SyncReport
from tests.fakes import FakeEmbedder

NAME = "hostile"
MAX_CHARS = 100_000  # small, so the bounded cases are cheap
MAX_CHUNKS = 40
CANARY = "CANARY-8c1f-never-index-me"

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, Path)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while _opened is set


def _pdf(*pages: str, encrypt: str | None = None) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=True, encrypt=encrypt)
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return buf.getvalue()


def _docx(*paragraphs: str) -> bytes:
    import docx

    d = docx.Document()
    for text in paragraphs:
        d.add_paragraph(text)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _docx_with_body(body_xml: str, prolog: str = "") -> bytes:
    """A real docx whose word/document.xml body is replaced (billion laughs, huge XML)."""
    src = zipfile.ZipFile(io.BytesIO(_docx("seed")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                text = data.decode()
                head, _, rest = text.partition("?>")
                start = rest.index("<w:body>") + len("<w:body>")
                data = (head + "?>" + prolog + rest[:start] + body_xml + rest[start:]).encode()
            z.writestr(info.filename, data)
    return out.getvalue()


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * (64 * 2**20))
    return out.getvalue()


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + "]>"
)
LOOPING_PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n"
    b"3 0 obj << /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)

GOOD = {
    "good.md": "# Harbour ferry\n\nThe harbour ferry leaves the pier every twenty minutes.",
    "good.txt": "The observatory telescope was rebuilt with a mirror from Jena in 1931.",
    "good.html": "<html><body><h1>Orchard</h1><p>The orchard grows seventeen kinds of "
    "apples, among them the rare Gravensteiner.</p></body></html>",
}
GOOD_BINARY = {
    "good.pdf": ("The lighthouse keeper logs every passing ship in a leather book.",),
    "good.docx": ("The bakery sells rye bread with caraway seeds on Saturdays.",),
}

# source -> (where it must be reported, words its reason must contain)
EXPECTED: dict[str, tuple[str, str]] = {
    "empty.txt": ("failed", "empty"),
    "blank.md": ("failed", "no extractable text"),
    "bom-only.txt": ("failed", "no extractable text"),
    "script-only.html": ("failed", "no extractable text"),
    "truncated.pdf": ("failed", "PDF"),
    "encrypted.pdf": ("failed", "encrypted"),
    "looping.pdf": ("failed", "PDF"),
    "random.pdf": ("failed", "PDF"),
    "zip-bomb.docx": ("failed", "zip bomb"),
    "not-a-zip.docx": ("failed", "bad zip"),
    "huge-xml.docx": ("failed", "over the"),
    "billion-laughs.docx": ("failed", "entity"),
    "deep-nesting.html": ("failed", "nested too deeply"),
    "binary.txt": ("skipped", "binary"),
    "too-big.txt": ("failed", "larger than"),
    "program.exe": ("skipped", "unsupported"),
    "Makefile": ("skipped", "no extension"),
    ".hidden.md": ("skipped", "hidden"),
    ".hidden-dir/": ("skipped", "hidden folder"),
    "fifo.txt": ("skipped", "not a regular file"),
    "passwd.txt": ("skipped", "outside"),
    "outside-dir/": ("skipped", "outside"),
    "alias.md": ("skipped", "inside"),
    "docs-alias/": ("skipped", "inside"),
    "loop.md": ("skipped", "loops"),
    "dangling.txt": ("skipped", "broken"),
    "huge-line.txt": ("truncated", "characters"),
    "huge-markup.html": ("truncated", "markup"),
    "many-chunks.txt": ("truncated", "chunks"),
    "bad\\xffname.txt": ("notes", "not valid UTF-8"),
    "utf8-bad-bytes.txt": ("notes", "U+FFFD"),
    "utf16-no-bom.txt": ("notes", "utf-16-le"),
}
# Indexed (perhaps truncated) without any problem entry: they must not crash anything.
SURVIVE = [
    "nul-bytes.txt",
    "headings.md",
    "deep-quotes.md",
    "cp1252.txt",
    "evil\u202egnp.txt",
    "x" * 200 + ".md",
    "docs/real.md",
]


def build_folder(kb: Path, outside: Path) -> None:
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{CANARY} root:x:0:0", encoding="utf-8")
    kb.mkdir()
    for name, text in GOOD.items():
        (kb / name).write_text(text, encoding="utf-8")
    (kb / "good.pdf").write_bytes(_pdf(*GOOD_BINARY["good.pdf"]))
    (kb / "good.docx").write_bytes(_docx(*GOOD_BINARY["good.docx"]))
    files: dict[str, bytes] = {
        "empty.txt": b"",
        "blank.md": b"  \n\n\t\n",
        "bom-only.txt": b"\xef\xbb\xbf",
        "script-only.html": b"<html><script>var x = 1;</script></html>",
        "truncated.pdf": _pdf("A page that is cut off halfway.")[:400],
        "encrypted.pdf": _pdf("Secret minutes of the board.", encrypt="hunter2"),
        "looping.pdf": LOOPING_PDF,
        "random.pdf": os.urandom(3000),
        "zip-bomb.docx": _zip_bomb(),
        "not-a-zip.docx": b"PK\x03\x04 definitely not a zip",
        "huge-xml.docx": _docx_with_body("<w:p><w:r><w:t>word</w:t></w:r></w:p>" * 30_000),
        "billion-laughs.docx": _docx_with_body(
            "<w:p><w:r><w:t>&lol9; laughing</w:t></w:r></w:p>", LAUGHS
        ),
        "binary.txt": b"\x89PNG\r\n\x1a\n" + os.urandom(4000),
        "program.exe": b"MZ\x90\x00",
        "Makefile": b"all:\n\techo hi\n",
        ".hidden.md": b"# hidden",
        "nul-bytes.txt": b"The pier has a crane. " * 500 + b"\x00\x00 tail text after nul",
        "huge-line.txt": b"abcdefghij" * 120_000,  # 1.2 MB, one line, no spaces
        "huge-markup.html": b"<p>" + (b'<span class="' + b"a" * 60 + b'">x</span> ') * 20_000,
        "many-chunks.txt": b"\n\n".join(
            f"Paragraph {i} of the tariff table says route {i} costs {i} crowns.".encode() * 12
            for i in range(400)
        ),
        "headings.md": "".join(f"# Heading number {i}\n\n" for i in range(10_000)).encode(),
        "deep-nesting.html": b"<div>" * 50_000 + b"deep text" + b"</div>" * 50_000,
        "deep-quotes.md": b"> " * 20_000 + b"quoted\n" + b"- " * 20_000 + b"listed\n",
        "cp1252.txt": "Le café de la gare ouvre à sept heures, été comme hiver.".encode("cp1252"),
        "utf8-bad-bytes.txt": "Le café crème coûte trois euros à la gare".encode() + b"\xff\xfe!",
        "utf16-no-bom.txt": "The tram depot is open on Sundays.".encode("utf-16-le"),
        "evil\u202egnp.txt": b"Right-to-left override in the file name.",
        "x" * 200 + ".md": b"# Long name\n\nA file with a very long name.",
    }
    for name, data in files.items():
        (kb / name).write_bytes(data)
    with open(kb / "too-big.txt", "wb") as f:  # sparse: 3 MB over the 2 MB limit, costs nothing
        f.truncate(3 * 2**20)
    with open(os.path.join(os.fsencode(kb), b"bad\xffname.txt"), "wb") as f:
        f.write(b"A file whose name is not UTF-8 still has text.")
    (kb / ".hidden-dir").mkdir()
    (kb / ".hidden-dir" / "x.md").write_text("hidden", encoding="utf-8")
    (kb / "docs").mkdir()
    (kb / "docs" / "real.md").write_text("# Real\n\nA real nested document.", encoding="utf-8")
    os.mkfifo(kb / "fifo.txt")
    (kb / "passwd.txt").symlink_to(outside / "secret.txt")
    (kb / "outside-dir").symlink_to(outside, target_is_directory=True)
    (kb / "alias.md").symlink_to(kb / "good.md")
    (kb / "docs-alias").symlink_to(kb / "docs", target_is_directory=True)
    (kb / "loop.md").symlink_to(kb / "loop.md")
    (kb / "dangling.txt").symlink_to(kb / "nowhere.txt")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyncReport, Any, Path, list[str]]:
    global _opened
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    tmp = tmp_path_factory.mktemp("hostile")
    kb, outside = tmp / "kb", tmp / "outside"
    build_folder(kb, outside)
    settings = load_settings(
        data_dir=tmp / "data",
        ingest={"max_file_mb": 2, "max_chars": MAX_CHARS, "max_chunks": MAX_CHUNKS},
    )
    client = chromadb.PersistentClient(
        path=str(tmp / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    _opened = []
    try:
        report = ingest_folder(settings, kb, NAME, embedder=FakeEmbedder(), client=client)
        opened = list(_opened)
    finally:
        _opened = None
    return report, client.get_collection(NAME), outside, opened


def _problems(report: SyncReport, kind: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in getattr(report, kind):
        out[p.source] = out.get(p.source, "") + " " + p.reason
    return out


def test_suite_is_big_enough() -> None:
    assert len(EXPECTED) + len(SURVIVE) + len(GOOD) + len(GOOD_BINARY) >= 40


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_each_bad_file_is_reported_with_its_reason(
    ingested: tuple[SyncReport, Any, Path, list[str]], source: str
) -> None:
    report = ingested[0]
    kind, words = EXPECTED[source]
    problems = _problems(report, kind)
    assert source in problems, (kind, getattr(report, kind))
    assert words.lower() in problems[source].lower()


def test_good_and_surviving_files_are_indexed(
    ingested: tuple[SyncReport, Any, Path, list[str]],
) -> None:
    report, collection, _, _ = ingested
    indexed = set(report.added)
    must = set(GOOD) | set(GOOD_BINARY) | set(SURVIVE) | {"bad\\xffname.txt"}
    must |= {s for s, (kind, _) in EXPECTED.items() if kind in {"truncated", "notes"}}
    assert must <= indexed, must - indexed
    assert not indexed & {s for s, (kind, _) in EXPECTED.items() if kind in {"failed", "skipped"}}
    metas = collection.get(include=["metadatas"])["metadatas"]
    assert {str(m["source"]) for m in metas} == indexed


def test_good_files_are_searchable(ingested: tuple[SyncReport, Any, Path, list[str]]) -> None:
    collection = ingested[1]
    fake = FakeEmbedder()
    sentences = {**GOOD, **{k: v[0] for k, v in GOOD_BINARY.items()}}
    sentences["good.html"] = "The orchard grows seventeen kinds of apples"
    sentences["good.md"] = "The harbour ferry leaves the pier every twenty minutes."
    for source, sentence in sentences.items():
        got = collection.query(query_embeddings=[fake.embed_query(sentence)], n_results=3)
        assert source in [m["source"] for m in got["metadatas"][0]], source


def test_bounded_work(ingested: tuple[SyncReport, Any, Path, list[str]]) -> None:
    collection = ingested[1]
    got = collection.get(include=["metadatas", "documents"])
    per_source: dict[str, int] = {}
    chars: dict[str, int] = {}
    for meta, doc in zip(got["metadatas"], got["documents"], strict=True):
        per_source[str(meta["source"])] = per_source.get(str(meta["source"]), 0) + 1
        chars[str(meta["source"])] = chars.get(str(meta["source"]), 0) + len(doc)
        assert "\x00" not in doc
        assert "lol" * 100 not in doc  # entities never expanded
    assert max(per_source.values()) <= MAX_CHUNKS
    assert per_source["headings.md"] < 500  # 10,000 headings merge into far fewer chunks
    assert chars["huge-line.txt"] <= MAX_CHARS * 1.3  # overlap adds a little


def test_stored_names_and_report_are_valid_utf8(
    ingested: tuple[SyncReport, Any, Path, list[str]],
) -> None:
    import json

    report, collection, _, _ = ingested
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    for meta in collection.get(include=["metadatas"])["metadatas"]:
        str(meta["source"]).encode("utf-8")


def test_nothing_outside_the_folder_is_read(
    ingested: tuple[SyncReport, Any, Path, list[str]],
) -> None:
    _, collection, outside, opened = ingested
    assert opened, "the audit hook saw no open at all"
    assert not [p for p in opened if p.startswith(str(outside))]
    assert not [p for p in opened if os.path.basename(p) in {"passwd.txt", "secret.txt"}]
    assert all(CANARY not in d for d in collection.get(include=["documents"])["documents"])
