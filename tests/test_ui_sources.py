"""The Gradio chat's source cards: passages from hostile documents render as markdown and stay
inert (no script, handler, frame, style, image or javascript: link survives), cited first."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from app.chat.types import Source
from app.server.ui_sources import render_passage, source_cards

HOSTILE = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click](javascript:window.__xss=1)",
    "[click](JaVaScRiPt:window.__xss=1)",
    "[click](jav&#x61;script:window.__xss=1)",
    "[click](&#106;avascript:window.__xss=1)",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox)",
    "<iframe src='https://evil.test'></iframe>",
    '<p style="background:url(https://evil.test/x)">styled</p>',
    '<a href="https://evil.test" onclick="window.__xss=1">a</a>',
    "![pixel](https://evil.test/track.png)",
    "&lt;script&gt;window.__xss=1&lt;/script&gt;",
    "<svg onload=window.__xss=1>",
    "<details open ontoggle=window.__xss=1>",
    '<a href="https://ok.test" style="x" target="_self">t</a>',
]


def source(text: str, number: int = 1, **fields: object) -> Source:
    values: dict = {
        "number": number, "source": "docs/a.md", "title": "A", "language": "en",
        "score": 0.8123, "text": text,
    }  # fmt: skip
    values.update(fields)
    return Source(**values)


class Elements(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self, out: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


SAFE_TAGS = {
    "div", "details", "summary", "span", "bdi", "p", "strong", "em", "code", "pre", "ul", "ol",
    "li",
    "a", "br", "hr", "blockquote", "h1", "h2", "h3", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


def inert(out: str) -> None:
    """No element or attribute that runs, fetches or styles anything survives."""
    for tag, attrs in Elements(out).found:
        assert tag in SAFE_TAGS, (tag, out)
        for name, value in attrs:
            assert not name.startswith("on") and name not in {"style", "src", "srcdoc"}, out
            if name == "href":
                assert (value or "").split(":")[0].lower() in {"http", "https", "mailto"}, out
            if tag == "a":
                assert dict(attrs).get("rel") == "noopener nofollow", out


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_passages_stay_inert(payload: str) -> None:
    inert(render_passage(f"Intro **bold** {payload} end"))
    inert(source_cards([source(f"x {payload}", title=payload, section=payload, language=payload)]))


def test_markdown_renders_with_safe_links() -> None:
    out = render_passage(
        "**Two years** of warranty:\n\n- one\n- two\n\n[site](https://shop.test/w)"
    )
    assert "<strong>Two years</strong>" in out and out.count("<li>") == 2
    link = re.search(r"<a [^>]*>site</a>", out)
    assert link is not None
    assert 'href="https://shop.test/w"' in link.group(0)
    assert 'rel="noopener nofollow"' in link.group(0) and 'target="_blank"' in link.group(0)


def test_cards_show_everything_cited_first_and_rtl_passages() -> None:
    cards = source_cards(
        [
            source("plain", 1, title="", page=3),
            source("**الضمان** سنتان", 2, title="الضمان", language="ar", score=0.5,
                   url="https://shop.test/ar"),
            source("x", 3, url="javascript:alert(1)"),
        ],
        cited=[2],
    )  # fmt: skip
    assert cards.index("[2]") < cards.index("[1]") < cards.index("[3]")  # cited first
    assert "docs/a.md · p. 3" in cards and "0.500" in cards and ">ar<" in cards
    assert "<strong>الضمان</strong>" in cards and 'dir="auto"' in cards
    assert cards.count("<details") == 3 and cards.count(" open>") == 1  # only the cited is open
    assert 'href="https://shop.test/ar"' in cards and "javascript" not in cards
    assert source_cards([]) == '<p class="kbchat-no-sources">No sources for this answer.</p>'
