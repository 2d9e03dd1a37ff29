"""A conversation's transcript as HTML for the console's Conversations page, and its list rows as
plain-text table cells.

Everything in a transcript came from a visitor, the model or a document, so every string is
passed through html.escape and placed only in element text (never an attribute, never markdown):
document URLs are shown as text, not links, so a `javascript:` URL is harmless to read."""

from __future__ import annotations

from datetime import datetime
from html import escape

from app.server.conversation_admin import (
    ConversationSummary,
    FeedbackOut,
    HandoffOut,
    MessageOut,
    SourceOut,
    Transcript,
)

# Inline styles (constants: nothing from the data reaches them), with Gradio's theme variables,
# so the transcript reads the same in light and dark mode.
_MESSAGE = (
    "margin:0 0 10px;padding:8px 12px;border-left:4px solid var(--border-color-primary);"
    "background:var(--background-fill-secondary);border-radius:4px"
)
_ACCENT = {"assistant": "var(--color-accent)", "operator": "var(--color-green-500, #22c55e)"}
_TEXT = "white-space:pre-wrap;margin:4px 0"
_WHO = "font-size:0.85em;font-weight:600;opacity:0.8"
ROLES = {"user": "visitor", "assistant": "assistant", "operator": "operator"}
LIST_HEADERS = [
    "Last message (UTC)",
    "Assistant",
    "Knowledge base",
    "Languages",
    "First question",
    "Messages",
    "Rated up",
    "Rated down",
    "Unanswered",
    "Handed over",
    "Lead",
]


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def list_row(c: ConversationSummary) -> list[str]:
    """One table row; every cell a plain string (the table shows them as text)."""
    return [
        when(c.last_at),
        c.assistant or "",
        c.collection,
        ", ".join(c.languages),
        c.first_question,
        str(c.messages),
        str(c.up),
        str(c.down),
        str(c.unanswered),
        c.handed_over or "",
        "yes" if c.has_lead else "",
    ]


def picker_label(c: ConversationSummary) -> str:
    question = c.first_question if len(c.first_question) <= 60 else c.first_question[:59] + "…"
    return f"{when(c.last_at)} · {question or '(no question)'}"


def transcript_html(t: Transcript) -> str:
    """The whole conversation, messages in order, each with its sources and feedback."""
    e = escape
    head = (
        f"<p class='kbchat-cc-meta'>Conversation <code>{e(t.session_id)}</code> · assistant "
        f"{e(t.assistant or '(none)')} · knowledge base {e(t.collection)} · started "
        f"{e(when(t.created))} UTC</p>"
    )
    parts = [head]
    if t.lead is not None:
        lead = t.lead
        parts.append(
            f"<p class='kbchat-cc-lead'><b>Lead:</b> {e(lead.name)} &lt;{e(lead.email)}&gt; "
            f"({e(lead.language)}), consented {e(when(lead.consent_at))} UTC to: "
            f"<q>{e(lead.consent_text)}</q></p>"
        )
    for h in t.handoffs:
        parts.append(_handoff(h))
    parts.extend(_message(m) for m in t.messages)
    if not t.messages:
        parts.append("<p>No messages.</p>")
    return "<div class='kbchat-cc-transcript'>" + "".join(parts) + "</div>"


def _handoff(h: HandoffOut) -> str:
    e = escape
    contact = f", contact {e(h.contact_email)}" if h.contact_email else ""
    return (
        f"<p class='kbchat-cc-handoff'><b>Handoff:</b> {e(h.state)} (reason {e(h.reason)}"
        f"{contact}), asked {e(when(h.created))}, accepted {e(when(h.accepted)) or '–'}, "
        f"closed {e(when(h.closed)) or '–'}</p>"
    )


def _message(m: MessageOut) -> str:
    e = escape
    role = ROLES.get(m.role, m.role)
    meta = f"{e(role)} · {e(m.language or '?')} · {e(when(m.created))} UTC"
    if m.role == "assistant" and m.grounded is False:
        meta += " · found nothing"
    if m.error:
        meta += f" · error: {e(m.error)}"
    body = f"<div class='kbchat-cc-text' style='{_TEXT}'>{e(m.content)}</div>"
    extra = ""
    if m.sources:
        cited = set(m.cited or [])
        items = "".join(_source(s, s.number in cited) for s in m.sources)
        extra += f"<div class='kbchat-cc-sources'><b>Sources</b><ul>{items}</ul></div>"
    if m.feedback:
        extra += "<ul class='kbchat-cc-feedback'>" + "".join(map(_feedback, m.feedback)) + "</ul>"
    style = _MESSAGE
    if m.role in _ACCENT:
        style += f";border-left-color:{_ACCENT[m.role]}"
    return (
        f"<div class='kbchat-cc-msg' style='{style}'><div class='kbchat-cc-who' style='{_WHO}'>"
        f"{meta}</div>{body}{extra}</div>"
    )


def _source(s: SourceOut, cited: bool) -> str:
    e = escape
    score = f"{s.score:.2f}" if s.score is not None else "–"
    where = f" p. {s.page}" if s.page is not None else ""
    url = f" · <span class='kbchat-cc-url'>{e(s.url)}</span>" if s.url else ""
    return (
        f"<li>[{s.number if s.number is not None else '–'}] {e(s.source)}{e(where)} · "
        f"{e(s.language or '?')} · score {score} · {'cited' if cited else 'not cited'}{url}</li>"
    )


def _feedback(f: FeedbackOut) -> str:
    e = escape
    mark = {"up": "rated up", "down": "rated down"}.get(f.rating, e(f.rating))
    comment = f": {e(f.comment)}" if f.comment else ""
    return f"<li><b>Feedback</b> {mark}{comment} ({e(when(f.created))} UTC)</li>"
