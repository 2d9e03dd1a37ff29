"""The handlers of the console's Conversations page (laid out by
app.server.ui_console_conversations): the filtered list and its pages, a transcript, the export
and erasure on request, all through ConversationAdmin, the service the admin API uses.

Every event is private and checks the shell's gate first. Nothing the browser sends is trusted:
filters are re-validated here (assistants and knowledge bases against the server's lists), the
list's session ids, the page cursor and the filters it was made with stay in server-side state,
so a row click names only a row of the list the server showed, and the conversation to erase is
the one the server opened. Exports are written into a private temporary folder the browser never
names, and older exports are removed from it."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import gradio as gr
from pydantic import EmailStr, Field, TypeAdapter, ValidationError

from app.server.assistant_schema import LANGUAGE_PATTERN
from app.server.console_transcript import LIST_HEADERS, list_row, picker_label, transcript_html
from app.server.conversation_admin import ConversationAdmin
from app.server.conversation_export import ExportFormat, csv_lines, file_name, json_lines
from app.server.conversation_query import (
    MAX_Q,
    ConversationFilter,
    Cursor,
    decode_cursor,
    end_of,
    start_of,
)
from app.server.ui_common import user_error

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers

log = logging.getLogger(__name__)

PAGE_SIZE = 50
EXPORT_TTL_S = 600  # an export stays in the private folder this long (Gradio serves its copy)
MAX_EMAIL = 254
_LANGUAGE = re.compile(LANGUAGE_PATTERN)
_EMAIL = TypeAdapter(Annotated[EmailStr, Field(max_length=MAX_EMAIL)])
RATINGS = [
    ("Any rating", ""),
    ("Rated up", "up"),
    ("Rated down", "down"),
    ("No feedback", "none"),
]
ANY = ""
PICK_ROW = "Pick a conversation from the list."
GONE = "That conversation no longer exists (erased?)."
NOTHING_OPEN = "Open a conversation first."
BAD_FILTER = "{name}: {why}"
# LIST outputs: table, ids, cursor, filters shown, picker, next button, assistant choices,
# knowledge-base choices, status
LIST_SIZE = 9
# OPENED outputs: current session, transcript, erase row, status
OPENED_SIZE = 4


class Gate(Protocol):
    """The console shell's lock (app.server.ui_console.Gate)."""

    state: Any

    def check(self, state: Any) -> None: ...


class FilterError(ValueError):
    """A filter the page could not have sent; its message is shown as is."""


class ConversationsConsole:
    """The page's handlers; each takes the gate's state first and returns its outputs in the
    order wired by conversations_page."""

    def __init__(
        self,
        admin: ConversationAdmin,
        gate: Gate,
        assistants: Callable[[], list[str]],
        collections: Callable[[], list[str]],
    ) -> None:
        self.admin, self.gate = admin, gate
        self._assistants, self._collections = assistants, collections
        self._exports: Path | None = None

    @classmethod
    def of(cls, handlers: ConsoleHandlers, admin: ConversationAdmin, gate: Gate) -> Any:
        registry, services = handlers.assistants, handlers.services
        return cls(
            admin,
            gate,
            (lambda: [a.id for a in registry.all()]) if registry is not None else (lambda: []),
            lambda: [str(c["name"]) for c in services.collections()],
        )

    # ------------------------------------------------------------------ the list
    def gate_changed(self, state: Any) -> tuple[Any, ...]:
        """The shell locked or unlocked: show the newest conversations, or clear the page."""
        try:
            self.gate.check(state)
        except gr.Error:
            return self._cleared("")
        return self._page(ConversationFilter(), None, "")

    def search(self, state: Any, *values: Any) -> tuple[Any, ...]:
        """The first page for the filters in the form (also the Refresh button)."""
        self.gate.check(state)
        try:
            filters = self.parse_filters(values)
        except FilterError as exc:
            return self._status(str(exc))
        return self._page(filters, None, "")

    def next_page(self, state: Any, shown: Any, cursor: Any) -> tuple[Any, ...]:
        """The page after the one shown, with the filters it was made with (server-side)."""
        self.gate.check(state)
        if not isinstance(shown, ConversationFilter) or not isinstance(cursor, Cursor):
            return self._status("That was the last page.")
        return self._page(shown, cursor, "")

    def reload(self, state: Any, shown: Any) -> tuple[Any, ...]:
        """The first page again, as last filtered (after an erasure)."""
        self.gate.check(state)
        filters = shown if isinstance(shown, ConversationFilter) else ConversationFilter()
        return self._page(filters, None, None)

    def reload_quietly(self, state: Any, shown: Any) -> tuple[Any, ...]:
        """`reload` without the status output, so an erasure's message stays on the page."""
        return self.reload(state, shown)[:-1]

    def parse_filters(self, values: Sequence[Any]) -> ConversationFilter:
        """The form's values (assistant, knowledge base, language, since, until, rating,
        unanswered, handed over, lead, search text) as a filter; FilterError if any is not one
        the page offers."""
        if len(values) != 10:
            raise FilterError("The filters are incomplete; reload the page.")
        assistant, collection, language, since, until, rating, *flags, q = values
        assistant = _text("Assistant", assistant, 64)
        if assistant and assistant not in self._assistants():
            raise FilterError("Assistant: no such assistant.")
        collection = _text("Knowledge base", collection, 200)
        if collection and collection not in self._collections():
            raise FilterError("Knowledge base: no such knowledge base.")
        primary, dash, region = _text("Language", language, 35).partition("-")
        language = primary.lower() + dash + region  # "DE" finds "de"; "pt-BR" stays as stored
        if language and not _LANGUAGE.match(language):
            raise FilterError("Language: a code such as en, de or pt-BR.")
        rating = _text("Rating", rating, 8)
        if rating not in {value for _, value in RATINGS}:
            raise FilterError("Rating: pick one from the list.")
        start, end = _moment("Since", since), _moment("Until", until)
        pairs = zip(FLAGS, flags, strict=True)
        unanswered, handed_over, lead = (_flag(name, value) for name, value in pairs)
        search = _text("Search", q, MAX_Q)
        return ConversationFilter(
            assistant=assistant or None,
            collection=collection or None,
            language=language or None,
            since=start_of(start) if start is not None else None,
            until=end_of(end) if end is not None else None,
            rating=rating or None,  # type: ignore[arg-type]  # checked against RATINGS
            unanswered=unanswered,
            handed_over=handed_over,
            lead=lead,
            q=search or None,
        )

    # ------------------------------------------------------------ a transcript
    def open_row(self, state: Any, ids: Any, evt: gr.SelectData) -> tuple[Any, ...]:
        """A click on a row of the list opens that row's conversation."""
        self.gate.check(state)
        index = evt.index
        row = index[0] if isinstance(index, list | tuple) and index else index
        if not isinstance(ids, list) or type(row) is not int or not 0 <= row < len(ids):
            return self._opened(None, PICK_ROW)
        return self._open(ids[row])

    def open_session(self, state: Any, ids: Any, picked: Any) -> tuple[Any, ...]:
        """The picker names a conversation of the list shown, nothing else."""
        self.gate.check(state)
        if not isinstance(ids, list) or not isinstance(picked, str) or picked not in ids:
            return self._opened(None, PICK_ROW)
        return self._open(picked)

    # ------------------------------------------------------------------ export
    def export(self, state: Any, fmt: ExportFormat, *values: Any) -> tuple[Any, Any]:
        """Outputs: the file (in a private folder; Gradio serves its own copy), status."""
        self.gate.check(state)
        try:
            filters = self.parse_filters(values)
            path = self._write_export(filters, fmt)
        except FilterError as exc:
            return gr.update(value=None, visible=False), str(exc)
        except Exception as exc:
            return gr.update(value=None, visible=False), user_error(exc)
        return gr.update(value=str(path), visible=True), f"Exported as {path.name}."

    def export_csv(self, state: Any, *values: Any) -> tuple[Any, Any]:
        return self.export(state, "csv", *values)

    def export_json(self, state: Any, *values: Any) -> tuple[Any, Any]:
        return self.export(state, "json", *values)

    def _write_export(self, filters: ConversationFilter, fmt: ExportFormat) -> Path:
        folder = self._export_folder()
        self._prune_exports(folder)
        target = Path(tempfile.mkdtemp(dir=folder)) / file_name(fmt)
        batches = self.admin.export(filters)
        lines = csv_lines(batches) if fmt == "csv" else json_lines(batches)
        with target.open("w", encoding="utf-8", newline="") as out:
            for chunk in lines:
                out.write(chunk)
        log.info("console export of conversations as %s written", fmt)
        return target

    def _export_folder(self) -> Path:
        if self._exports is None or not self._exports.is_dir():
            self._exports = Path(tempfile.mkdtemp(prefix="kbchat-export-"))  # mode 0700
        return self._exports

    @staticmethod
    def _prune_exports(folder: Path) -> None:
        cutoff = time.time() - EXPORT_TTL_S
        for child in folder.iterdir():
            if child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------ erasure
    def ask_erase(self, state: Any, current: Any) -> tuple[Any, Any, Any]:
        """Outputs: pending erasure, confirmation row, status."""
        self.gate.check(state)
        if not isinstance(current, str):
            return None, gr.update(visible=False), NOTHING_OPEN
        return current, gr.update(visible=True), "Erase this conversation for good?"

    def confirm_erase(self, state: Any, pending: Any, current: Any) -> tuple[Any, ...]:
        """Erase the conversation asked about, if it is still the one open. Outputs: pending,
        confirmation row, OPENED."""
        self.gate.check(state)
        hide = (None, gr.update(visible=False))
        if not isinstance(pending, str) or pending != current:
            return (*hide, *self._opened(current, "Nothing to erase."))
        try:
            erased = self.admin.erase(pending)
        except Exception as exc:
            return (*hide, *self._opened(current, user_error(exc)))
        message = "Erased 1 conversation." if erased else "Erased 0 conversations (already gone)."
        return (*hide, *self._opened(None, message))

    def ask_erase_email(self, state: Any, email: Any) -> tuple[Any, Any, Any]:
        """Outputs: pending email, confirmation row, status."""
        self.gate.check(state)
        try:
            address = str(_EMAIL.validate_python(email if isinstance(email, str) else None))
        except ValidationError:
            return None, gr.update(visible=False), "Type the visitor's email address."
        count = "every conversation whose lead gave"
        return address, gr.update(visible=True), f"Erase {count} {address} for good?"

    def confirm_erase_email(self, state: Any, pending: Any) -> tuple[Any, Any, Any, Any]:
        """Outputs: pending email, confirmation row, email box, status."""
        self.gate.check(state)
        hide = (None, gr.update(visible=False))
        try:
            address = str(_EMAIL.validate_python(pending))
            erased = self.admin.erase_by_email(address)
        except ValidationError:
            return (*hide, gr.skip(), "Nothing to erase.")
        except Exception as exc:
            return (*hide, gr.skip(), user_error(exc))
        noun = "conversation" if erased == 1 else "conversations"
        return (*hide, "", f"Erased {erased} {noun} of {address}.")

    def cancel(self, state: Any) -> tuple[Any, Any, Any]:
        self.gate.check(state)
        return None, gr.update(visible=False), ""

    # ------------------------------------------------------------------ helpers
    def _page(
        self, filters: ConversationFilter, cursor: Cursor | None, status: str | None
    ) -> tuple[Any, ...]:
        try:
            page = self.admin.list_conversations(filters, PAGE_SIZE, cursor)
            next_cursor = _decode(page.next)
            assistants, collections = self._assistants(), self._collections()
        except Exception as exc:
            return self._status(user_error(exc))
        ids = [c.session_id for c in page.items]
        rows = [list_row(c) for c in page.items] or [[""] * len(LIST_HEADERS)]
        if status is None:
            status = ""
        elif not status:
            more = "; more on the next page" if next_cursor else ""
            status = f"{len(ids)} conversation{'s' if len(ids) != 1 else ''}{more}."
        return (
            rows,
            ids,
            next_cursor,
            filters,
            gr.update(choices=[(picker_label(c), c.session_id) for c in page.items], value=None),
            gr.update(interactive=next_cursor is not None),
            gr.update(choices=[("All assistants", ANY), *[(a, a) for a in assistants]]),
            gr.update(choices=[("All knowledge bases", ANY), *[(c, c) for c in collections]]),
            status,
        )

    def _cleared(self, status: str) -> tuple[Any, ...]:
        return (
            [[""] * len(LIST_HEADERS)],
            [],
            None,
            None,
            gr.update(choices=[], value=None),
            gr.update(interactive=False),
            gr.skip(),
            gr.skip(),
            status,
        )

    def _status(self, message: str) -> tuple[Any, ...]:
        return (*[gr.skip()] * (LIST_SIZE - 1), message)

    def _open(self, session_id: str) -> tuple[Any, ...]:
        try:
            found = self.admin.transcript(session_id)
        except Exception as exc:
            return self._opened(None, user_error(exc))
        if found is None:
            return self._opened(None, GONE)
        return session_id, transcript_html(found), gr.update(visible=True), ""

    @staticmethod
    def _opened(current: str | None, status: str) -> tuple[Any, ...]:
        """Keep `current` open (the transcript unchanged) or close it, with a message."""
        if current is not None:
            return current, gr.skip(), gr.skip(), status
        return None, "", gr.update(visible=False), status


FLAGS = ("Unanswered", "Handed over", "Lead")


def _text(name: str, value: Any, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FilterError(BAD_FILTER.format(name=name, why="not text."))
    value = value.strip()
    if len(value) > limit:
        raise FilterError(BAD_FILTER.format(name=name, why=f"at most {limit} characters."))
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise FilterError(BAD_FILTER.format(name=name, why="one line of text."))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(BAD_FILTER.format(name=name, why="invalid text.")) from None
    return value


def _moment(name: str, value: Any) -> date | datetime | None:
    text = _text(name, value, 40)
    if not text:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(BAD_FILTER.format(name=name, why="a date such as 2026-11-30.")) from None


def _flag(name: str, value: Any) -> bool | None:
    """A ticked box filters on it; an unticked one does not filter."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    raise FilterError(BAD_FILTER.format(name=name, why="tick or untick it."))


def _decode(token: str | None) -> Cursor | None:
    return decode_cursor(token) if token else None
