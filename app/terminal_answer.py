"""A streamed answer shown in the terminal as markdown: re-rendered as tokens arrive (rich.live).

LLM answers use markdown (lists, bold, headings); raw asterisks and hashes are noise in a terminal.
Links show their target in brackets instead of a hidden OSC 8 hyperlink, so a link text from a
document cannot disguise where it points.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

from app.chat.types import ChatResult, Done, Token

REFRESHES_PER_SECOND = 8  # re-parsing the whole answer per token would be wasted work


def _render(text: str) -> Markdown:
    return Markdown(text, hyperlinks=False)


def stream_markdown(console: Console, events: Iterable[Token | Done]) -> ChatResult | None:
    """Show the tokens as markdown while they come; return the final result (None if cut off)."""
    text, result = "", None
    with Live(
        _render(""),
        console=console,
        refresh_per_second=REFRESHES_PER_SECOND,
        vertical_overflow="visible",
    ) as live:
        for event in events:
            if isinstance(event, Token):
                text += event.text
                live.update(_render(text))
            elif isinstance(event, Done):
                result = event.result
                live.update(_render(result.answer), refresh=True)
    return result
