"""The Gradio admin tab: unlock with the admin key (wrong keys spend the same budget as the admin
API), upload documents into a collection, re-sync a collection's folder.

The only files read are the tab's own uploads, each checked by `ui_files.read_upload` before any
is saved; their cached copies are deleted once saved."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from app.server.access import Throttles
from app.server.services import BadRequest
from app.server.ui_common import client_of, user_error
from app.server.ui_files import read_upload

if TYPE_CHECKING:
    from app.server.services import Services

log = logging.getLogger(__name__)

ADMIN_DISABLED = "Admin is disabled until KBCHAT_ADMIN_API_KEY is set on the server."
ADMIN_LOCKED = "Unlock the admin tab first."
ADMIN_THROTTLED = "Too many wrong keys; try again in {s} s."


def check_admin_key(configured: Any, given: str | None) -> tuple[bool, str]:
    """(unlocked, message) for a key typed into the admin tab; constant-time comparison."""
    if configured is None:
        return False, ADMIN_DISABLED
    expected = configured.get_secret_value()
    if not expected:
        return False, ADMIN_DISABLED
    if given and secrets.compare_digest(given.encode(), expected.encode()):
        return True, "Admin unlocked."
    return False, "Wrong admin key."


class AdminHandlers:
    def __init__(self, services: Services, throttles: Throttles) -> None:
        self.services, self.throttles = services, throttles
        self.settings = services.settings

    def unlock(self, key: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: unlocked flag, admin panel, key box, status. Wrong keys spend the client's
        admin-failure budget, shared with the admin API; beyond it no key is even compared."""
        settings = self.settings
        client = client_of(request)
        wait = self.throttles.admin_locked(client)
        if wait is not None and settings.admin_api_key is not None:
            return False, gr.update(visible=False), "", ADMIN_THROTTLED.format(s=wait)
        ok, msg = check_admin_key(settings.admin_api_key, key)
        if not ok and settings.admin_api_key is not None:
            self.throttles.admin_failed(client)
        return ok, gr.update(visible=ok), "", msg

    def upload_and_sync(
        self,
        unlocked: bool,
        collection: str | None,
        files: list[str] | None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        """Outputs: report, status, chat collection dropdown, file box. Only files uploaded
        through this page are read (all are checked before any is saved); once saved, their
        cached copies are deleted and the file box is cleared."""
        if not unlocked:
            return gr.skip(), ADMIN_LOCKED, gr.skip(), gr.skip()
        name = (collection or "").strip()
        if not files:
            return gr.skip(), "Choose one or more files to upload first.", gr.skip(), gr.skip()
        try:
            if not name:
                raise BadRequest("Enter a collection name.")
            for path in files:
                read_upload(path, consume=False)
            for i, path in enumerate(files):
                progress((i, len(files)), desc="Saving uploads", unit="files")
                original = Path(path).name
                self.services.save_upload(name, original, read_upload(path))
            done = f"Uploaded {len(files)} file(s) and synced {name!r}."
            return (*self._sync(name, progress, done), None)
        except Exception as exc:
            msg = user_error(exc)
            gr.Warning(msg)
            return gr.skip(), f"Upload failed: {msg}", gr.skip(), gr.skip()

    def resync(
        self, unlocked: bool, collection: str | None, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        """Outputs: report, status, chat collection dropdown."""
        if not unlocked:
            return gr.skip(), ADMIN_LOCKED, gr.skip()
        name = (collection or "").strip()
        try:
            if not name:
                raise BadRequest("Enter a collection name.")
            return self._sync(name, progress, f"Synced {name!r}.")
        except Exception as exc:
            msg = user_error(exc)
            gr.Warning(msg)
            return gr.skip(), f"Sync failed: {msg}", gr.skip()

    def _sync(self, name: str, progress: gr.Progress, done: str) -> tuple[Any, ...]:
        def report_progress(files_done: int, total: int) -> None:
            progress((files_done, total), desc="Embedding files", unit="files")

        report = self.services.sync(name, progress=report_progress)
        try:
            names = [str(c["name"]) for c in self.services.collections()]
            dropdown: Any = gr.Dropdown(choices=names)
        except Exception:
            log.exception("could not list collections after a sync")
            dropdown = gr.skip()
        return report.to_dict(), done, dropdown


def admin_tab(handlers: AdminHandlers, chat_collection: gr.Dropdown) -> None:
    """Lay out the admin tab (inside an open gr.Tab) and wire its private events; a sync
    refreshes the chat tab's knowledge-base list."""
    admin_unlocked = gr.State(False)
    with gr.Row():
        admin_key = gr.Textbox(
            label="Admin key", type="password", elem_id="kbchat-admin-key", scale=4
        )
        unlock_btn = gr.Button("Unlock", elem_id="kbchat-admin-unlock", scale=1)
    admin_status = gr.Markdown("", elem_id="kbchat-admin-status")
    with gr.Column(visible=False, elem_id="kbchat-admin-panel") as admin_panel, gr.Group():
        admin_collection = gr.Textbox(
            label="Collection",
            value=handlers.settings.collection,
            elem_id="kbchat-admin-collection",
        )
        uploads = gr.File(
            file_count="multiple",
            type="filepath",
            label="Documents",
            elem_id="kbchat-admin-files",
        )
        with gr.Row():
            upload_btn = gr.Button(
                "Upload and sync", variant="primary", elem_id="kbchat-admin-upload"
            )
            resync_btn = gr.Button("Re-sync folder", elem_id="kbchat-admin-resync")
        report = gr.JSON(label="Ingest report", elem_id="kbchat-admin-report")

    gr.on(
        [unlock_btn.click, admin_key.submit],
        handlers.unlock,
        admin_key,
        [admin_unlocked, admin_panel, admin_key, admin_status],
        api_visibility="private",
    )
    sync_outputs = [report, admin_status, chat_collection]
    upload_btn.click(
        handlers.upload_and_sync,
        [admin_unlocked, admin_collection, uploads],
        [*sync_outputs, uploads],
        api_visibility="private",
        concurrency_id="kbchat-sync",
    )
    resync_btn.click(
        handlers.resync,
        [admin_unlocked, admin_collection],
        sync_outputs,
        api_visibility="private",
        concurrency_id="kbchat-sync",
    )
