"""A document's own web address, as the loaders find it: HTML canonical link or og:url, YAML front
matter in Markdown and text; anything that is not a safe absolute http(s) URL is dropped and the
document still loads."""

from __future__ import annotations

import logging

import pytest

from ingestion.doc_url import MAX_URL_CHARS, web_url
from ingestion.loaders import load_bytes

GOOD = "https://docs.example.com/guide/returns?lang=en#top"
HOSTILE = [
    "/guide/returns",  # relative
    "guide.html",
    "//evil.example/x",  # scheme-relative
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://example.com/x",
    "https://user:secret@example.com/x",  # credentials
    "https://user@example.com/x",
    "https://good.example\\@evil.example/",  # backslash: a slash to browsers
    "https://example.com/a\nb",  # newline inside
    "https://example.com/a b",
    "https://example.com/\x07x",  # a control character (NUL makes a file binary: see below)
    "https://example.com/\u202etxt.exe",  # bidi override
    "https:///nohost",
    "https://example.com:99999/",  # port out of range
    "https://" + "a" * MAX_URL_CHARS + ".com/",  # overlong
    "",
]


def html(head: str) -> bytes:
    return (
        f"<html lang='en'><head><title>Returns</title>{head}</head><body><main><h1>Returns</h1>"
        "<p>Items can be returned within thirty days of delivery.</p></main></body></html>"
    ).encode()


def front(lines: str, ext: str = ".md") -> tuple[bytes, str]:
    body = "# Returns\n\nItems can be returned within thirty days of delivery.\n"
    return f"---\n{lines}\n---\n{body}".encode(), f"returns{ext}"


def test_web_url_keeps_absolute_http_and_https() -> None:
    assert web_url(GOOD) == GOOD
    assert web_url("http://example.com") == "http://example.com"
    assert web_url("  https://example.com/x \n") == "https://example.com/x"
    assert web_url("https://例え.jp/ページ") == "https://例え.jp/ページ"  # letters, not spaces
    long = "https://example.com/" + "a" * (MAX_URL_CHARS - 20)
    assert len(long) == MAX_URL_CHARS and web_url(long) == long
    assert web_url(None) is None and web_url(42) is None and web_url(["https://x.y"]) is None
    assert web_url("https://example.com/\x00") is None


@pytest.mark.parametrize("url", HOSTILE)
def test_web_url_refuses(url: str) -> None:
    assert web_url(url) is None


def test_html_canonical_link_wins_over_og_url() -> None:
    head = (
        '<meta property="og:url" content="https://example.com/og">'
        f'<link rel="alternate" href="https://example.com/alt"><link rel="Canonical" href="{GOOD}">'
    )
    doc = load_bytes(html(head), "returns.html")
    assert doc.url == GOOD and doc.title == "Returns" and "thirty days" in doc.text


def test_html_og_url_when_no_canonical() -> None:
    doc = load_bytes(html('<meta property="og:url" content="https://example.com/og">'), "r.htm")
    assert doc.url == "https://example.com/og"


def test_html_without_address_has_none() -> None:
    assert load_bytes(html(""), "returns.html").url == ""


@pytest.mark.parametrize("url", HOSTILE)
def test_html_hostile_canonical_is_dropped_and_the_page_still_loads(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    escaped = url.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    escaped = "".join(f"&#{ord(c)};" if ord(c) < 32 else c for c in escaped)
    with caplog.at_level(logging.DEBUG, logger="ingestion.doc_url"):
        doc = load_bytes(html(f'<link rel="canonical" href="{escaped}">'), "returns.html")
    assert doc.url == "" and "thirty days" in doc.text
    if url:
        assert "dropped" in caplog.text


@pytest.mark.parametrize(
    ("lines", "ext", "expected"),
    [
        (f"url: {GOOD}", ".md", GOOD),
        (f"title: Returns\nsource_url: '{GOOD}'", ".markdown", GOOD),
        (f"canonical_url: {GOOD}", ".txt", GOOD),
        (f'url: "{GOOD}"\nsource_url: https://example.com/other', ".md", GOOD),
        ("url: javascript:alert(1)", ".md", ""),
        ("url: https://user:pass@example.com/x", ".md", ""),
        ('url: "https://example.com/a\\nb"', ".md", ""),  # a YAML escape: a real newline
        ("url: [https://example.com/x]", ".md", ""),  # not a string
        ("url: 12", ".md", ""),
        ("url: &a [*a]", ".md", ""),  # aliases
        ("author: someone", ".md", ""),
    ],
)
def test_front_matter_url_and_the_block_is_not_content(lines: str, ext: str, expected: str) -> None:
    data, name = front(lines, ext)
    doc = load_bytes(data, name)
    assert doc.url == expected and doc.title.endswith("Returns")  # not "---"
    assert doc.text.startswith("# Returns") and "thirty days" in doc.text


@pytest.mark.parametrize("lines", ["url: [[[[[[[[[[[[[[[[", "- just\n- a list", "Plain words"])
def test_a_block_that_is_not_a_yaml_mapping_stays_in_the_text(lines: str) -> None:
    data, name = front(lines)
    doc = load_bytes(data, name)
    assert doc.url == "" and doc.text.startswith("---\n") and "thirty days" in doc.text


def test_front_matter_only_at_the_very_start_and_only_when_closed() -> None:
    body = f"# Returns\n\nText.\n\n---\nurl: {GOOD}\n---\n"
    assert load_bytes(body.encode(), "r.md").url == ""
    assert load_bytes(f"---\nurl: {GOOD}\n".encode(), "r.md").url == ""
    assert load_bytes(f"\ufeff---\r\nurl: {GOOD}\r\n---\r\nText.".encode(), "r.md").url == GOOD


def test_huge_front_matter_is_not_parsed() -> None:
    filler = "x: " + "y" * (20 * 1024)
    assert load_bytes(f"---\n{filler}\nurl: {GOOD}\n---\nText.".encode(), "r.md").url == ""


def test_html_file_front_matter_is_not_read() -> None:
    assert load_bytes(f"---\nurl: {GOOD}\n---\n<p>Text</p>".encode(), "r.html").url == ""
