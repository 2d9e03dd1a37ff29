"""The console's Knowledge page: pick, create and delete a knowledge base; see its documents
(status, why one failed, chunks, language, size, when written); upload several files, delete
documents and re-sync, each with the ingest report as a table.

Every event checks the gate first, and nothing the browser sends is taken as it is: the chosen
knowledge base must be one the server lists now, a document to delete one that the server lists
in it, a new name must pass `validate_collection_name`, and only files uploaded through this page
are read (`ui_files.read_upload`). The work is done by the same services as the admin API."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from app.server.knowledge import list_documents
from app.server.services import BadRequest, NotFound
from app.server.ui_common import user_error
from app.server.ui_files import read_upload
from app.server.ui_knowledge_tables import (
    DOCUMENT_HEADERS,
    MAX_ROWS,
    REPORT_HEADERS,
    cell,
    document_rows,
    plain,
    report_rows,
    report_summary,
)
from app.settings import validate_collection_name
from app.store import StoreError

if TYPE_CHECKING:
    from gradio.dependencies import Dependency

    from app.server.services import Services
    from app.server.ui_console import Gate
    from ingestion.sync import SyncReport

log = logging.getLogger(__name__)

MAX_FILES = 50  # files in one upload
MAX_DELETE = 50  # documents deleted in one go
PICK_ONE = "Choose a knowledge base from the list."


class KnowledgeHandlers:
    def __init__(self, services: Services, gate: Gate) -> None:
        self.services, self.gate = services, gate

    # ------------------------------------------------------------ checks
    def names(self) -> list[str]:
        return [str(c["name"]) for c in self.services.collections()]

    def existing(self, name: Any) -> str:
        """`name` if the server lists a knowledge base of that name now, else BadRequest."""
        if not isinstance(name, str) or name not in self.names():
            raise BadRequest(PICK_ONE)
        return name

    def _view(self, name: str | None) -> tuple[Any, ...]:
        """Picker, documents table, documents to delete: for `name`, or the first there is."""
        names = self.names()
        chosen = name if name in names else (names[0] if names else None)
        rows: list[list[str]] = []
        sources: list[str] = []
        label = "Documents"
        if chosen is not None:
            documents = list_documents(self.services, chosen)
            rows = document_rows(documents)
            sources = [d.source for d in documents.documents[:MAX_ROWS]]
            total = len(documents.documents)
            shown = f"the first {MAX_ROWS} of {total}" if total > MAX_ROWS else str(total)
            label = f"Documents ({shown})"
        return (
            gr.update(choices=names, value=chosen),
            gr.update(value=rows, label=label),
            gr.update(choices=sources, value=[]),
        )

    def _chat_list(self) -> Any:
        try:
            return gr.update(choices=self.names())
        except Exception:
            log.exception("could not list collections for the chat tab")
            return gr.skip()

    def _after_sync(self, name: str, report: SyncReport | None, status: str) -> tuple[Any, ...]:
        """The view, the report (summary, table), the status and the chat tab's list."""
        summary: Any = gr.skip() if report is None else report_summary(report)
        table: Any = gr.skip() if report is None else gr.update(value=report_rows(report))
        return (*self._view(name), summary, table, status, self._chat_list())

    @staticmethod
    def _fail(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        message = str(exc) if isinstance(exc, StoreError) else user_error(exc)
        # gr.Error renders its message as HTML: names in it come from the browser or a file
        return gr.Error(html.escape(cell(message)), print_exception=False)

    # ------------------------------------------------------------ events
    def load(self, state: Any, current: Any) -> tuple[Any, ...]:
        """After an unlock attempt: the view when it opened the page, nothing otherwise."""
        if not self.gate.is_open(state):
            return gr.skip(), gr.skip(), gr.skip()
        return self.refresh(state, current)

    def refresh(self, state: Any, current: Any) -> tuple[Any, ...]:
        """Outputs: picker, documents table, documents to delete."""
        self.gate.check(state)
        try:
            return self._view(current if isinstance(current, str) else None)
        except Exception as exc:
            raise self._fail(exc) from None

    def create(self, state: Any, name: Any) -> tuple[Any, ...]:
        """Outputs: the sync outputs, then the name box (cleared)."""
        self.gate.check(state)
        try:
            name = validate_collection_name(str(name or "").strip()[:256])
            if name in self.names():
                raise BadRequest(f"A knowledge base named {name!r} exists already.")
            report = self.services.sync(name)
            return (*self._after_sync(name, report, f"Created **{plain(name)}**."), "")
        except Exception as exc:
            raise self._fail(exc) from None

    def ask_delete(self, state: Any, current: Any) -> tuple[Any, ...]:
        """Outputs: pending deletion, confirmation box, its text. Nothing is deleted yet."""
        self.gate.check(state)
        try:
            name = self.existing(current)
        except Exception as exc:
            raise self._fail(exc) from None
        question = (
            f"Delete **{plain(name)}**, its index and its uploaded documents? "
            "This cannot be undone."
        )
        return name, gr.update(visible=True), question

    def cancel_delete(self, state: Any) -> tuple[Any, ...]:
        self.gate.check(state)
        return None, gr.update(visible=False), ""

    def confirm_delete(self, state: Any, pending: Any, current: Any) -> tuple[Any, ...]:
        """Delete the knowledge base asked about, if it is still the one picked. Outputs: the
        view, status, chat list, pending deletion, confirmation box."""
        self.gate.check(state)
        try:
            name = self.existing(pending)
            if current != name:
                raise BadRequest("The chosen knowledge base changed; ask to delete it again.")
            self.services.delete_collection(name)
            shown = (*self._view(None), f"Deleted **{plain(name)}**.", self._chat_list())
            return (*shown, None, gr.update(visible=False))
        except Exception as exc:
            raise self._fail(exc) from None

    def upload(
        self, state: Any, current: Any, files: Any, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        """Outputs: the sync outputs, then the file box (cleared). Every file is checked
        before any is saved; once saved, its cached copy is deleted."""
        self.gate.check(state)
        try:
            name = self.existing(current)
            if not files:
                raise BadRequest("Choose one or more files to upload first.")
            if not isinstance(files, list) or len(files) > MAX_FILES:
                raise BadRequest(f"Upload at most {MAX_FILES} files at a time.")
            paths = [str(f) for f in files]
            for path in paths:
                read_upload(path, consume=False)
            for i, path in enumerate(paths):
                progress((i, len(paths)), desc="Saving uploads", unit="files")
                self.services.save_upload(name, Path(path).name, read_upload(path))
            report = self._sync(name, progress)
            done = f"Uploaded {len(paths)} file(s) into **{plain(name)}** and synced it."
            return (*self._after_sync(name, report, done), None)
        except Exception as exc:
            raise self._fail(exc) from None

    def delete_documents(self, state: Any, current: Any, selected: Any) -> tuple[Any, ...]:
        """Delete the chosen documents (each one the server lists in the knowledge base) and
        sync. Outputs: the sync outputs."""
        self.gate.check(state)
        try:
            name = self.existing(current)
            chosen = selected if isinstance(selected, list) else []
            if not chosen:
                raise BadRequest("Choose the documents to delete first.")
            if len(chosen) > MAX_DELETE:
                raise BadRequest(f"Delete at most {MAX_DELETE} documents at a time.")
            listed = {d.source for d in list_documents(self.services, name).documents}
            if not all(isinstance(s, str) and s in listed for s in chosen):
                raise BadRequest(f"Choose documents listed in {name!r}.")
            report, deleted, problems = None, 0, []
            for source in dict.fromkeys(chosen):
                try:  # one that went meanwhile must not hide the others' outcome
                    report = self.services.delete_document(name, source)
                    deleted += 1
                except (NotFound, BadRequest) as exc:
                    problems.append(plain(str(exc)))
            done = f"Deleted {deleted} document(s) from **{plain(name)}**."
            if problems:
                done += " Not deleted: " + "; ".join(problems)
            return self._after_sync(name, report, done)
        except Exception as exc:
            raise self._fail(exc) from None

    def resync(
        self, state: Any, current: Any, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        """Sync the knowledge base with its folder. Outputs: the sync outputs."""
        self.gate.check(state)
        try:
            name = self.existing(current)
            report = self._sync(name, progress)
            return self._after_sync(name, report, f"Synced **{plain(name)}**.")
        except Exception as exc:
            raise self._fail(exc) from None

    def _sync(self, name: str, progress: gr.Progress) -> SyncReport:
        def report_progress(files_done: int, total: int) -> None:
            progress((files_done, total), desc="Embedding files", unit="files")

        return self.services.sync(name, progress=report_progress)


@dataclass
class KnowledgePage:
    """What the shell wires after an unlock: load the page's lists."""

    handlers: KnowledgeHandlers
    gate: Gate
    picker: gr.Dropdown
    view: list[Any]

    def load_after(self, opened: Dependency) -> None:
        opened.then(
            self.handlers.load, [self.gate.state, self.picker], self.view, api_visibility="private"
        )


def knowledge_page(
    handlers: KnowledgeHandlers, gate: Gate, chat_collection: gr.Dropdown
) -> KnowledgePage:
    """Lay out the page (inside an open gr.Tab) and wire its private events."""
    private: dict[str, Any] = {"api_visibility": "private"}
    with gr.Row():
        picker = gr.Dropdown(choices=[], label="Knowledge base", elem_id="kbchat-kb-pick", scale=3)
        refresh = gr.Button("Refresh", elem_id="kbchat-kb-refresh", scale=1)
        ask_delete = gr.Button(
            "Delete knowledge base…", variant="stop", elem_id="kbchat-kb-delete", scale=1
        )
    pending = gr.State(None)  # the knowledge base the confirmation is about
    with gr.Group(visible=False) as confirm_box:
        confirm_text = gr.Markdown("", elem_id="kbchat-kb-confirm")
        with gr.Row():
            confirm = gr.Button("Yes, delete it", variant="stop", elem_id="kbchat-kb-confirm-yes")
            cancel = gr.Button("Cancel", elem_id="kbchat-kb-confirm-no")
    status = gr.Markdown("", elem_id="kbchat-kb-status")
    with gr.Row():
        new_name = gr.Textbox(
            label="New knowledge base",
            placeholder="letters, digits, '.', '_' or '-'",
            max_length=200,
            elem_id="kbchat-kb-new",
            scale=3,
        )
        create = gr.Button("Create", elem_id="kbchat-kb-create", scale=1)
    documents = gr.Dataframe(
        headers=DOCUMENT_HEADERS,
        datatype="str",
        interactive=False,
        label="Documents",
        elem_id="kbchat-kb-docs",
    )
    uploads = gr.File(
        file_count="multiple",
        type="filepath",
        label="Add documents (drop several files)",
        height=150,
        elem_id="kbchat-kb-files",
    )
    with gr.Row():
        upload = gr.Button("Upload and sync", variant="primary", elem_id="kbchat-kb-upload")
        resync = gr.Button("Re-sync", elem_id="kbchat-kb-resync")
    with gr.Row():
        doomed = gr.Dropdown(
            choices=[],
            multiselect=True,
            label="Documents to delete",
            elem_id="kbchat-kb-doomed",
            scale=3,
        )
        delete_docs = gr.Button("Delete selected", variant="stop", elem_id="kbchat-kb-del-docs")
    summary = gr.Markdown("", elem_id="kbchat-kb-report-summary")
    report = gr.Dataframe(
        headers=REPORT_HEADERS,
        datatype="str",
        interactive=False,
        label="Ingest report",
        elem_id="kbchat-kb-report",
    )

    view = [picker, documents, doomed]
    synced = [*view, summary, report, status, chat_collection]
    state = gate.state
    gr.on([refresh.click, picker.input], handlers.refresh, [state, picker], view, **private)
    create.click(handlers.create, [state, new_name], [*synced, new_name], **private)
    new_name.submit(handlers.create, [state, new_name], [*synced, new_name], **private)
    ask_delete.click(
        handlers.ask_delete, [state, picker], [pending, confirm_box, confirm_text], **private
    )
    cancel.click(handlers.cancel_delete, state, [pending, confirm_box, confirm_text], **private)
    confirm.click(
        handlers.confirm_delete,
        [state, pending, picker],
        [*view, status, chat_collection, pending, confirm_box],
        concurrency_id="kbchat-sync",
        **private,
    )
    upload.click(
        handlers.upload,
        [state, picker, uploads],
        [*synced, uploads],
        concurrency_id="kbchat-sync",
        **private,
    )
    resync.click(handlers.resync, [state, picker], synced, concurrency_id="kbchat-sync", **private)
    delete_docs.click(
        handlers.delete_documents,
        [state, picker, doomed],
        synced,
        concurrency_id="kbchat-sync",
        **private,
    )
    return KnowledgePage(handlers, gate, picker, view)
