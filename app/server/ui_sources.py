"""The Gradio chat's source cards: one card per passage of the last answer, built on the server
as HTML (number, title or file with page/section, language, score, the passage as markdown, the
document's link), cited passages first and open, the others folded.

Documents are hostile, so a passage goes through two independent locks: markdown-it renders it
with raw HTML, images and every link scheme but http/https/mailto off, then nh3 (ammonia) keeps
only an allow-list of tags and attributes, no styles, no event handlers, links with
rel="noopener nofollow" opening in a new tab. Every other field is HTML-escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import cache
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

from app.chat.types import Source

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
PASSAGE_TAGS = frozenset(
    {
        "p", "br", "hr", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a",
        "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
MAX_PASSAGE = 20_000  # characters rendered per passage; chunks are far shorter
NO_SOURCES = '<p class="kbchat-no-sources">No sources for this answer.</p>'


@cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.enable("table")
    md.validateLink = _link_allowed  # type: ignore[method-assign]
    return md


def _link_allowed(url: str) -> bool:
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in LINK_SCHEMES


def render_passage(text: str) -> str:
    """A passage as sanitised HTML: markdown without raw HTML or images, then nh3's allow-list."""
    rendered = _markdown().render(text[:MAX_PASSAGE])
    return nh3.clean(
        rendered,
        tags=set(PASSAGE_TAGS),
        attributes={"a": {"href", "title"}},
        url_schemes=set(LINK_SCHEMES),
        link_rel="noopener nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def _document_link(url: str | None) -> str:
    """The document's own address, http(s) only, as an escaped link; empty for anything else."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return ""
    href = html.escape(url, quote=True)
    return (
        f'<a class="kbchat-card-link" href="{href}" target="_blank" '
        f'rel="noopener nofollow">Open the document ↗</a>'
    )


def _card(source: Source, cited: bool) -> str:
    """One card; the title (and file) in <bdi>, so an Arabic title keeps "[n]" and ".md" apart."""
    where = source.title or source.source
    if source.page is not None:
        where += f" · p. {source.page}"
    elif source.section and source.section != source.title:
        where += f" · {source.section}"
    file = "" if where.startswith(source.source) else source.source
    path = f'<bdi dir="ltr">{html.escape(file)}</bdi>'
    shown_file = f' <span class="kbchat-card-file">({path})</span>'
    state = "cited" if cited else "not cited"
    summary = (
        f'<span class="kbchat-card-n">[{int(source.number)}]</span> '
        f'<bdi class="kbchat-card-title">{html.escape(where)}</bdi>'
        f"{shown_file if file else ''} "
        f'<span class="kbchat-card-badge">{html.escape(source.language)}</span>'
        f'<span class="kbchat-card-score" title="similarity">{source.score:.3f}</span>'
        f'<span class="kbchat-card-state">{state}</span>'
    )
    return (
        f'<details class="kbchat-card{" kbchat-card-cited" if cited else ""}"'
        f"{' open' if cited else ''}><summary>{summary}</summary>"
        f'<div class="kbchat-card-passage" dir="auto">{render_passage(source.text)}</div>'
        f"{_document_link(source.url)}</details>"
    )


def source_cards(sources: Sequence[Source], cited: Sequence[int] = ()) -> str:
    """The cards of one answer's sources: cited ones first (open), then the rest (folded)."""
    if not sources:
        return NO_SOURCES
    marked = set(cited)
    ordered = [s for s in sources if s.number in marked] + [
        s for s in sources if s.number not in marked
    ]
    cards = "".join(_card(s, s.number in marked) for s in ordered)
    return f'<div class="kbchat-cards">{cards}</div>'


CARDS_CSS = """
#kbchat-sources .kbchat-cards { display: flex; flex-direction: column; gap: 8px; }
#kbchat-sources .kbchat-card {
  border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
  background: var(--block-background-fill); color: var(--body-text-color);
}
#kbchat-sources .kbchat-card-cited { border-left: 4px solid var(--color-accent); }
#kbchat-sources summary { cursor: pointer; line-height: 1.6; }
#kbchat-sources .kbchat-card-n { font-weight: 600; }
#kbchat-sources .kbchat-card-title { font-weight: 600; }
#kbchat-sources .kbchat-card-file { color: var(--body-text-color-subdued); }
#kbchat-sources .kbchat-card-badge, #kbchat-sources .kbchat-card-score,
#kbchat-sources .kbchat-card-state {
  font-size: 0.8em; padding: 1px 6px; border-radius: 999px; margin-left: 4px;
  background: var(--background-fill-secondary); color: var(--body-text-color-subdued);
  border: 1px solid var(--border-color-primary);
}
#kbchat-sources .kbchat-card-passage {
  margin-top: 6px; max-height: 16em; overflow-y: auto; overflow-wrap: anywhere;
}
#kbchat-sources .kbchat-card-passage :is(h1, h2, h3, h4, h5, h6) {
  font-size: 1em; margin: 0.4em 0;
}
#kbchat-sources .kbchat-card-link { display: inline-block; margin-top: 6px; }
#kbchat-chips button { white-space: normal; }
"""
