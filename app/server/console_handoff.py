"""The handlers of the console's Handoff page (laid out by app.server.ui_console_handoff): the
queue of conversations handed to a person, a picked conversation's transcript, the operator's
reply, taking a conversation over and handing it back.

Every event checks the shell's gate first (`gate.check(state)` raises gr.Error while locked;
the timer's tick stops itself instead, so a locked page is not flooded with errors). Nothing the
browser sends is trusted: the conversation being answered is server-side state, set only by
picking one from the server's queue or by taking over a session id that is checked (its shape,
then that the session exists); the pending hand-back is server-side too. Writes go through the
same Handoffs service as the admin API, and the transcript is built from escaped text only:
visitors and the model write what is shown."""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import gradio as gr

from app.server.conversation_query import ConversationFilter
from app.server.handoff import NoHandoff, QueueItem
from app.server.ui_common import user_error

if TYPE_CHECKING:
    from app.server.conversation_admin import ConversationAdmin
    from app.server.handoff import Handoffs

log = logging.getLogger(__name__)

SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # as app.server.inputs.SessionId
MAX_REPLY = 4000
MAX_SHOWN = 200  # transcript messages shown (the latest)
RECENT = 30  # recent conversations offered to take over
TICK_S = 3.0
QUEUE_COLUMNS = ["State", "Assistant", "Language", "First question", "Waiting since (UTC)",
                 "Contact email", "Session"]  # fmt: skip
ROLES = {"user": "Visitor", "assistant": "Assistant", "operator": "Operator"}
NO_CONVERSATION = "Pick a conversation from the queue first."
NOT_IN_QUEUE = "That conversation is not in the queue; refresh and pick again."
BAD_SESSION = "A session id is 1-64 letters, digits, - or _."
NO_SESSION = "No such conversation."
EMPTY = "<p class='kbchat-ho-empty'>No conversation picked.</p>"
# REFRESH outputs: queue table, picker, transcript, recent conversations, seen ids, status
REFRESH_SIZE = 6


class Gate(Protocol):
    """The console shell's lock (app.server.ui_console)."""

    state: Any

    def check(self, state: Any) -> None: ...


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _label(item: QueueItem) -> str:
    question = " ".join(item.first_question.split())[:60]
    return f"{item.state} · {item.assistant or '-'} · {question or item.session_id}"


def clean_reply(text: Any) -> str:
    """The operator's reply, or gr.Error: text, not empty, at most MAX_REPLY characters, no
    control or format characters except newlines and tabs."""
    if not isinstance(text, str) or not text.strip():
        raise gr.Error("Write a reply first.")
    text = text.strip()
    if len(text) > MAX_REPLY:
        raise gr.Error(f"A reply has at most {MAX_REPLY} characters.")
    bad = {"Cc", "Cf", "Cs", "Co"}
    if any(c not in "\n\t" and unicodedata.category(c) in bad for c in text):
        raise gr.Error("A reply must not contain control characters.")
    return text


class HandoffConsole:
    """The page's events over the Handoffs service (and ConversationAdmin for transcripts and
    recent conversations; without it the page shows the queue only)."""

    def __init__(
        self, handoffs: Handoffs, conversations: ConversationAdmin | None, gate: Gate
    ) -> None:
        self.handoffs, self.conversations, self.gate = handoffs, conversations, gate

    # ------------------------------------------------------------------ reading
    def queue(self) -> list[QueueItem]:
        """Waiting first (longest waiting first), then active."""
        waiting = sorted(self.handoffs.queue("waiting"), key=lambda i: (i.created, i.id))
        active = sorted(self.handoffs.queue("active"), key=lambda i: (i.created, i.id))
        return [*waiting, *active]

    def transcript_html(self, session_id: str | None) -> str:
        """The conversation's latest messages as escaped HTML (no markup from anyone)."""
        if not session_id:
            return EMPTY
        if self.conversations is None:
            return "<p>Transcripts need the conversation store.</p>"
        found = self.conversations.transcript(session_id)
        if found is None:
            return f"<p>{html.escape(NO_SESSION)}</p>"
        state = next((h.state for h in reversed(found.handoffs)), "none")
        rows = []
        for m in found.messages[-MAX_SHOWN:]:
            who = ROLES.get(m.role, "?")
            rows.append(
                f"<div class='kbchat-ho-msg kbchat-ho-{html.escape(m.role)}'>"
                f"<b>{who}</b> <small>{_when(m.created)}</small>"
                f"<div style='white-space:pre-wrap'>{html.escape(m.content)}</div></div>"
            )
        head = (
            f"<p><b>Session</b> {html.escape(found.session_id)} · "
            f"<b>assistant</b> {html.escape(found.assistant or '-')} · "
            f"<b>handoff</b> {html.escape(state)}</p>"
        )
        style = "color:var(--body-text-color)"  # readable in dark mode too
        lines = "".join(rows) or "<p>No messages.</p>"
        return f"<div id='kbchat-ho-lines' style='{style}'>{head}{lines}</div>"

    def _recent(self) -> list[str]:
        if self.conversations is None:
            return []
        page = self.conversations.list_conversations(ConversationFilter(), limit=RECENT)
        return [c.session_id for c in page.items]

    def _view(self, current: str | None, seen: Any, notify: bool) -> tuple[Any, ...]:
        """Queue rows, picker, transcript, recent conversations (skipped by the timer, which
        must not reset a session id being typed there), seen waiting ids."""
        items = self.queue()
        rows = [
            [
                i.state,
                i.assistant or "",
                i.language,
                i.first_question[:200],
                _when(i.created),
                i.contact_email or "",
                i.session_id,
            ]
            for i in items
        ] or [[""] * len(QUEUE_COLUMNS)]
        known = set(seen) if isinstance(seen, list | set) else None
        waiting = {i.id for i in items if i.state == "waiting"}
        if notify and known is not None:
            for item in items:
                if item.id in waiting - known:
                    gr.Info(f"New handoff: {html.escape(_label(item))}")  # toasts are HTML
        choices = [(_label(i), i.session_id) for i in items]
        if current and current not in {i.session_id for i in items}:
            choices.append((f"{current} (not in the queue)", current))
        picker = gr.Dropdown(choices=choices, value=current)
        recent = gr.skip() if notify else gr.Dropdown(choices=self._recent())
        seen_now = sorted((known or set()) | waiting)
        return rows, picker, self.transcript_html(current), recent, seen_now

    # ------------------------------------------------------------------- events
    def refresh(self, state: Any, current: str | None, seen: Any) -> tuple[Any, ...]:
        """Outputs: REFRESH (queue, picker, transcript, recent, seen, status)."""
        self.gate.check(state)
        try:
            return (*self._view(current, seen, notify=False), "")
        except Exception as exc:
            log.exception("handoff queue failed")
            raise gr.Error(f"Could not read the queue: {user_error(exc)}") from None

    def gate_changed(self, state: Any, current: str | None, seen: Any) -> tuple[Any, ...]:
        """On unlock: fill the page; when locked again: leave it as it is."""
        if not self.gate_open(state):
            return (gr.skip(),) * REFRESH_SIZE
        return self.refresh(state, current, seen)

    def gate_open(self, state: Any) -> bool:
        try:
            self.gate.check(state)
        except gr.Error:
            return False
        return True

    def tick(self, state: Any, current: str | None, seen: Any) -> tuple[Any, ...]:
        """The timer: refresh and announce new handoffs; locked: stop the timer."""
        if not self.gate_open(state):
            return (*(gr.skip(),) * REFRESH_SIZE, gr.Timer(active=False))
        try:
            return (*self._view(current, seen, notify=True), gr.skip(), gr.skip())
        except Exception:
            log.exception("handoff queue failed")
            return (*(gr.skip(),) * REFRESH_SIZE, gr.skip())

    def tab_selected(self, state: Any, ours: bool) -> Any:
        """The timer runs while the page is unlocked and its tab is the one shown."""
        return gr.Timer(active=ours and self.gate_open(state))

    def pick(self, state: Any, value: Any) -> tuple[Any, str, str]:
        """Outputs: current, transcript, status. Only a session in the server's queue."""
        self.gate.check(state)
        if not isinstance(value, str) or value not in {i.session_id for i in self.queue()}:
            return None, EMPTY, NOT_IN_QUEUE
        return value, self.transcript_html(value), ""

    def take_over(self, state: Any, value: Any, seen: Any) -> tuple[Any, ...]:
        """Outputs: current, REFRESH. Any existing session (asked for a person or not)."""
        self.gate.check(state)
        session = value.strip() if isinstance(value, str) else ""
        if not SESSION.match(session):
            raise gr.Error(BAD_SESSION)
        try:
            self.handoffs.take_over(session)
        except NoHandoff:
            raise gr.Error(NO_SESSION) from None
        return (session, *self._view(session, seen, notify=False), "You have the conversation.")

    def reply(self, state: Any, current: str | None, text: Any, seen: Any) -> tuple[Any, ...]:
        """Outputs: reply box, REFRESH. Sent to the picked conversation (it becomes active)."""
        self.gate.check(state)
        if not current:
            raise gr.Error(NO_CONVERSATION)
        message = clean_reply(text)
        try:
            self.handoffs.reply(current, message)
        except NoHandoff:
            raise gr.Error(NO_SESSION) from None
        return ("", *self._view(current, seen, notify=False), "Sent.")

    def ask_hand_back(self, state: Any, current: str | None) -> tuple[Any, Any, str]:
        """Outputs: pending, confirmation row, status."""
        self.gate.check(state)
        if not current:
            raise gr.Error(NO_CONVERSATION)
        return current, gr.Row(visible=True), "Hand this conversation back to the assistant?"

    def cancel_hand_back(self, state: Any) -> tuple[Any, Any, str]:
        self.gate.check(state)
        return None, gr.Row(visible=False), ""

    def confirm_hand_back(
        self, state: Any, pending: str | None, current: str | None, seen: Any
    ) -> tuple[Any, ...]:
        """Outputs: pending, confirmation row, current, REFRESH. The pending session must be
        the one still picked (server-side both)."""
        self.gate.check(state)
        if not pending or pending != current:
            raise gr.Error(NO_CONVERSATION)
        try:
            self.handoffs.hand_back(pending)
        except NoHandoff:
            raise gr.Error("This conversation has no open handoff.") from None
        hidden = gr.Row(visible=False)
        view = self._view(None, seen, notify=False)
        return (None, hidden, None, *view, "Handed back: the assistant answers again.")
