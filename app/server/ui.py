"""The Gradio web UI: a chat tab (streaming answers, sources, feedback) and an admin tab (upload
documents, re-sync a folder), mounted by the app factory at "/".

Importing this module imports gradio (handlers need `gr.LikeData` resolvable as a type hint) but
does nothing else; building the UI does not touch `services`, mounting it lists the collections
once (their folders are blocked from Gradio's file route).

Text that comes from documents or the model is never rendered as HTML: sources go to a
Dataframe of plain-text cells; chat messages are HTML-escaped before they reach the Chatbot,
which also keeps its own HTML sanitisation on and custom tags off.

Nothing a browser sends is trusted as a file or as history: the conversation shown lives in
server-side `gr.State` (the Chatbot is only ever an output), every event is private to the page,
and the only files read are the admin tab's uploads, checked by `ui_files.read_upload`.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gradio as gr
from starlette.routing import Mount

from app.chat.types import Source, Token
from app.observability.request_id import HEADER as REQUEST_ID
from app.observability.request_id import with_request_id
from app.server.access import Throttles
from app.server.services import BadRequest, Completed, NotFound
from app.server.ui_files import (
    CACHE_CLEANUP,
    LocalFilesOnly,
    blocked_paths,
    keep_path_checks,
    read_upload,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.server.services import Services

log = logging.getLogger(__name__)

SOURCE_HEADERS = ["#", "file", "language", "score", "passage"]
ADMIN_DISABLED = "Admin is disabled until KBCHAT_ADMIN_API_KEY is set on the server."
ADMIN_LOCKED = "Unlock the admin tab first."
GENERIC_ERROR = "Something went wrong; the error was logged on the server."
RATE_LIMITED = "⚠ Too many requests; try again in {s} s."
ADMIN_THROTTLED = "Too many wrong keys; try again in {s} s."

Message = dict[str, Any]
Vote = Literal["up", "down"]


def source_rows(sources: list[Source]) -> list[list[Any]]:
    """One plain-text row per source: #, file (with page or section), language, score, passage."""
    rows: list[list[Any]] = []
    for s in sources:
        where = s.source
        if s.page is not None:
            where += f" (p. {s.page})"
        elif s.section:
            where += f" ({s.section})"
        rows.append([s.number, where, s.language, f"{s.score:.3f}", s.text])
    return rows


_MD_IMAGE = re.compile(r"!\[")


def as_text(text: str) -> str:
    """Escape HTML so the Chatbot shows tags from the model or a document as text, never markup;
    Markdown (lists, emphasis, the [n] citations) still renders, but not images, which would
    make the browser fetch whatever address a model or document names."""
    return _MD_IMAGE.sub(r"\\![", html.escape(text, quote=False))


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


def _user_error(exc: Exception) -> str:
    """A short message for the user; anything unexpected is logged, never shown."""
    if isinstance(exc, NotFound | BadRequest | ValueError | LookupError):
        return str(exc) or type(exc).__name__
    log.exception("UI handler failed")
    return GENERIC_ERROR


def _client(request: gr.Request | None) -> str:
    """The client address Gradio saw (the forwarded one when the peer is a trusted proxy)."""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


def build_ui(services: Services, throttles: Throttles | None = None) -> gr.Blocks:
    """`throttles` are the app's, so the chat and the admin key share the API's budgets."""
    settings = services.settings
    throttles = throttles or Throttles(settings.server)

    def collection_names() -> list[str]:
        return [str(c["name"]) for c in services.collections()]

    def pick_collection(names: list[str], current: str | None) -> str | None:
        for candidate in (current, settings.collection):
            if candidate and candidate in names:
                return candidate
        return names[0] if names else settings.collection

    # ------------------------------------------------------------------ chat handlers
    def refresh_collections(current: str | None) -> Any:
        try:
            names = collection_names()
        except Exception as exc:
            gr.Warning(f"Could not list collections: {_user_error(exc)}")
            return gr.skip()
        return gr.Dropdown(choices=names, value=pick_collection(names, current))

    def respond(
        message: str,
        history: list[Message] | None,
        session_id: str | None,
        collection: str | None,
        message_ids: dict[int, int] | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: input box, chatbot, history, sources, session id, last message id, message
        ids. `history` is server-side state: what the chatbot shows is never read back."""
        text = message.strip() if isinstance(message, str) else ""
        if not text:
            yield (gr.skip(),) * 7
            return
        chosen = collection if isinstance(collection, str) and collection else None
        chat: list[Message] = [*(history or []), {"role": "user", "content": as_text(text)}]
        wait = throttles.spend_chat(_client(request))  # the same budget as /api/chat and /v1
        if wait is not None:
            services.metrics.rate_limited.labels("ui").inc()
            chat.append({"role": "assistant", "content": RATE_LIMITED.format(s=wait)})
            yield gr.skip(), chat, chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        chat.append({"role": "assistant", "content": ""})
        ids = dict(message_ids or {})
        answer = ""
        skip = gr.skip()
        yield "", chat, chat, skip, skip, skip, skip
        try:
            events = services.chat(text, session_id=session_id, collection=chosen)
            # the id of the request that queued this turn (asgi-correlation-id wrote it there)
            request_id = request.headers.get(REQUEST_ID) if request is not None else None
            for event in with_request_id(events, request_id):
                if isinstance(event, Token):
                    answer += event.text
                    chat[-1] = {"role": "assistant", "content": as_text(answer)}
                    yield skip, chat, skip, skip, skip, skip, skip
                elif isinstance(event, Completed):
                    result = event.result
                    chat[-1] = {"role": "assistant", "content": as_text(result.answer or answer)}
                    ids[len(chat) - 1] = event.message_id
                    rows = source_rows(result.sources)
                    yield skip, chat, chat, rows, event.session_id, event.message_id, ids
        except Exception as exc:
            reply = f"{answer}\n\n" if answer else ""
            chat[-1] = {"role": "assistant", "content": as_text(f"{reply}⚠ {_user_error(exc)}")}
            yield skip, chat, chat, skip, skip, skip, skip

    def new_conversation() -> tuple[Any, ...]:
        """Outputs: chatbot, history, sources, session id, last message id, message ids,
        status."""
        return [], [], [], None, None, {}, ""

    def rate(session_id: str | None, message_id: int | None, vote: Vote) -> str:
        if message_id is None or session_id is None:
            return "No answer to rate yet."
        try:
            services.conversations.add_feedback(session_id, message_id, vote)
        except Exception as exc:
            msg = _user_error(exc)
            gr.Warning(msg)
            return f"Feedback not saved: {msg}"
        done = (
            "Thanks for the feedback (helpful)."
            if vote == "up"
            else "Thanks for the feedback (not helpful)."
        )
        gr.Info(done)
        return done

    def rate_up(session_id: str | None, message_id: int | None) -> str:
        return rate(session_id, message_id, "up")

    def rate_down(session_id: str | None, message_id: int | None) -> str:
        return rate(session_id, message_id, "down")

    def on_like(
        session_id: str | None, message_ids: dict[int, int] | None, data: gr.LikeData
    ) -> Any:
        """LikeData comes from the client as is: only an int index and a bool vote are used."""
        if data.liked is True or data.liked is False:
            index = data.index[0] if isinstance(data.index, list | tuple) else data.index
            if not isinstance(index, int) or isinstance(index, bool):
                return "This answer cannot be rated."
            message_id = (message_ids or {}).get(index)
            if message_id is None:
                return "This answer cannot be rated."
            return rate(session_id, message_id, "up" if data.liked else "down")
        return gr.skip()  # an undone like: nothing to store

    # ----------------------------------------------------------------- admin handlers
    def unlock(key: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: unlocked flag, admin panel, key box, status. Wrong keys spend the client's
        admin-failure budget, shared with the admin API; beyond it no key is even compared."""
        client = _client(request)
        wait = throttles.admin_locked(client)
        if wait is not None and settings.admin_api_key is not None:
            return False, gr.update(visible=False), "", ADMIN_THROTTLED.format(s=wait)
        ok, msg = check_admin_key(settings.admin_api_key, key)
        if not ok and settings.admin_api_key is not None:
            throttles.admin_failed(client)
        return ok, gr.update(visible=ok), "", msg

    def upload_and_sync(
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
                services.save_upload(name, original, read_upload(path))
            done = f"Uploaded {len(files)} file(s) and synced {name!r}."
            return (*_sync(name, progress, done), None)
        except Exception as exc:
            msg = _user_error(exc)
            gr.Warning(msg)
            return gr.skip(), f"Upload failed: {msg}", gr.skip(), gr.skip()

    def resync(
        unlocked: bool, collection: str | None, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        """Outputs: report, status, chat collection dropdown."""
        if not unlocked:
            return gr.skip(), ADMIN_LOCKED, gr.skip()
        name = (collection or "").strip()
        try:
            if not name:
                raise BadRequest("Enter a collection name.")
            return _sync(name, progress, f"Synced {name!r}.")
        except Exception as exc:
            msg = _user_error(exc)
            gr.Warning(msg)
            return gr.skip(), f"Sync failed: {msg}", gr.skip()

    def _sync(name: str, progress: gr.Progress, done: str) -> tuple[Any, ...]:
        def report_progress(files_done: int, total: int) -> None:
            progress((files_done, total), desc="Embedding files", unit="files")

        report = services.sync(name, progress=report_progress)
        try:
            dropdown: Any = gr.Dropdown(choices=collection_names())
        except Exception:
            log.exception("could not list collections after a sync")
            dropdown = gr.skip()
        return report.to_dict(), done, dropdown

    # -------------------------------------------------------------------------- layout
    with gr.Blocks(title="kbchat", delete_cache=CACHE_CLEANUP) as blocks:
        history = gr.State([])
        session_state = gr.State(None)
        last_message = gr.State(None)
        message_ids = gr.State({})
        admin_unlocked = gr.State(False)

        gr.Markdown("# kbchat")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    with gr.Row():
                        collection = gr.Dropdown(
                            choices=[settings.collection],
                            value=settings.collection,
                            label="Knowledge base",
                            allow_custom_value=True,
                            elem_id="kbchat-collection",
                            scale=4,
                        )
                        refresh = gr.Button(
                            "↻ Refresh", elem_id="kbchat-refresh", scale=1, size="sm"
                        )
                    chatbot = gr.Chatbot(
                        label="Conversation",
                        elem_id="kbchat-chatbot",
                        height=520,
                        sanitize_html=True,
                        allow_tags=False,
                        render_markdown=True,
                        feedback_options=("Like", "Dislike"),
                        buttons=["copy"],
                    )
                    with gr.Row():
                        box = gr.Textbox(
                            placeholder="Ask a question…",
                            show_label=False,
                            lines=1,
                            max_lines=6,
                            elem_id="kbchat-input",
                            scale=5,
                        )
                        send = gr.Button("Send", variant="primary", elem_id="kbchat-send", scale=1)
                    with gr.Row():
                        up = gr.Button("Helpful", elem_id="kbchat-feedback-up", size="sm")
                        down = gr.Button("Not helpful", elem_id="kbchat-feedback-down", size="sm")
                        new = gr.Button("New conversation", elem_id="kbchat-new", size="sm")
                    feedback_status = gr.Markdown("", elem_id="kbchat-feedback-status")
                with gr.Column(scale=2):
                    sources = gr.Dataframe(
                        value=[],
                        headers=SOURCE_HEADERS,
                        datatype=["number", "str", "str", "str", "str"],
                        type="array",
                        label="Sources of the last answer",
                        interactive=False,
                        wrap=True,
                        max_height=640,
                        column_widths=["36px", "120px", "76px", "64px", "200px"],
                        elem_id="kbchat-sources",
                    )

            with gr.Tab("Admin", id="admin"):
                with gr.Row():
                    admin_key = gr.Textbox(
                        label="Admin key",
                        type="password",
                        elem_id="kbchat-admin-key",
                        scale=4,
                    )
                    unlock_btn = gr.Button("Unlock", elem_id="kbchat-admin-unlock", scale=1)
                admin_status = gr.Markdown("", elem_id="kbchat-admin-status")
                with (
                    gr.Column(visible=False, elem_id="kbchat-admin-panel") as admin_panel,
                    gr.Group(),
                ):
                    admin_collection = gr.Textbox(
                        label="Collection",
                        value=settings.collection,
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

        # ------------------------------------------------------------------- wiring
        # Every event is private: the page calls them by index, no client needs them by name.
        blocks.load(refresh_collections, collection, collection, api_visibility="private")
        refresh.click(refresh_collections, collection, collection, api_visibility="private")

        gr.on(
            [box.submit, send.click],
            respond,
            [box, history, session_state, collection, message_ids],
            [box, chatbot, history, sources, session_state, last_message, message_ids],
            api_visibility="private",
            concurrency_limit=16,
            concurrency_id="kbchat-chat",
            show_progress="minimal",
        )
        cleared = [
            chatbot,
            history,
            sources,
            session_state,
            last_message,
            message_ids,
            feedback_status,
        ]
        new.click(new_conversation, None, cleared, api_visibility="private")
        chatbot.clear(new_conversation, None, cleared, api_visibility="private")
        rated = [session_state, last_message]
        up.click(rate_up, rated, feedback_status, api_visibility="private")
        down.click(rate_down, rated, feedback_status, api_visibility="private")
        chatbot.like(
            on_like, [session_state, message_ids], feedback_status, api_visibility="private"
        )

        gr.on(
            [unlock_btn.click, admin_key.submit],
            unlock,
            admin_key,
            [admin_unlocked, admin_panel, admin_key, admin_status],
            api_visibility="private",
        )
        sync_outputs = [report, admin_status, collection]
        upload_btn.click(
            upload_and_sync,
            [admin_unlocked, admin_collection, uploads],
            [*sync_outputs, uploads],
            api_visibility="private",
            concurrency_id="kbchat-sync",
        )
        resync_btn.click(
            resync,
            [admin_unlocked, admin_collection],
            sync_outputs,
            api_visibility="private",
            concurrency_id="kbchat-sync",
        )
    return blocks


def mount_ui(app: FastAPI, services: Services, throttles: Throttles | None = None) -> FastAPI:
    """Mount the UI at "/" with Gradio's file checks on: payloads may name only files uploaded
    through it, `/gradio_api/file=` serves only its own cache, never the blocked folders."""
    blocks = build_ui(services, throttles)
    mounted = gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        max_file_size=int(services.settings.server.max_upload_mb * 2**20),
        allowed_paths=[],
        blocked_paths=blocked_paths(services),
        run_history=False,  # no run records, no Hugging Face bucket routes
    )
    keep_path_checks(blocks)
    mounts = [r for r in mounted.routes if isinstance(r, Mount) and r.path == ""]
    if len(mounts) != 1:
        raise RuntimeError("expected exactly one Gradio app mounted at /")
    mounts[0].app = LocalFilesOnly(mounts[0].app)  # inside the app's body limits
    return mounted
