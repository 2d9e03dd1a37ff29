"""The Gradio web UI, mounted by the app factory at "/": a chat tab (app.server.ui_chat: an
assistant picker, streaming answers, source cards, one like/dislike per answer) and the operator
console behind the admin key (app.server.ui_console: knowledge bases, assistants, ...).

Importing this module imports gradio (handlers need `gr.LikeData` resolvable as a type hint) but
does nothing else; building the UI does not touch `services`, mounting it lists the collections
once (their folders are blocked from Gradio's file route).

Text that comes from documents or the model is never trusted as HTML: chat messages are
HTML-escaped before they reach the Chatbot (`as_text`), which also keeps its own HTML
sanitisation on and custom tags off; source cards render passages as markdown without raw HTML
and pass them through nh3's allow-list (app.server.ui_sources).

Nothing a browser sends is trusted as a file, as history or as a choice: the conversation shown,
the chosen assistant and its suggested questions live in server-side `gr.State` (the Chatbot is
only ever an output), every event is private to the page, and the only files read are the
console's uploads, checked by `ui_files.read_upload`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import gradio as gr
from starlette.routing import Mount

from app.server.access import Throttles
from app.server.ui_chat import ChatHandlers, chat_tab
from app.server.ui_common import as_text
from app.server.ui_console import ConsoleHandlers, ConsoleParts, check_admin_key, console_tab
from app.server.ui_files import CACHE_CLEANUP, LocalFilesOnly, blocked_paths, keep_path_checks
from app.server.ui_sources import CARDS_CSS

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

    from app.server.assistants import Assistants
    from app.server.services import Services

__all__ = ["as_text", "build_ui", "check_admin_key", "mount_ui", "ui_app"]


def build_ui(
    services: Services,
    throttles: Throttles | None = None,
    assistants: Assistants | None = None,
    parts: ConsoleParts | None = None,
) -> gr.Blocks:
    """`throttles` are the app's, so the chat and the admin key share the API's budgets;
    `assistants` (the app's) fill the assistant picker, which offers only "None" without them,
    and the console's Assistants page; `parts` are the other operator services its pages use."""
    throttles = throttles or Throttles(services.settings.server)
    chat = ChatHandlers(services, throttles, assistants, parts.handoffs if parts else None)
    console = ConsoleHandlers(services, throttles, assistants, parts)
    # analytics off: else Gradio asks its website for updates and reports usage to Hugging Face
    # at every start (GRADIO_ANALYTICS_ENABLED defaults to on): a self-hosted server calls out
    # to no one
    with gr.Blocks(title="kbchat", delete_cache=CACHE_CLEANUP, analytics_enabled=False) as blocks:
        gr.Markdown("# kbchat")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                tab = chat_tab(chat, blocks)
            with gr.Tab("Console", id="console"):
                console_tab(console, tab.collection)
    return blocks


def mount_ui(
    app: FastAPI,
    services: Services,
    throttles: Throttles | None = None,
    assistants: Assistants | None = None,
    parts: ConsoleParts | None = None,
) -> FastAPI:
    """Mount the UI at "/" with Gradio's file checks on: payloads may name only files uploaded
    through it, `/gradio_api/file=` serves only its own cache, never the blocked folders."""
    blocks = build_ui(services, throttles, assistants, parts)
    mounted = gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        max_file_size=int(services.settings.server.max_upload_mb * 2**20),
        allowed_paths=[],
        blocked_paths=blocked_paths(services),
        css=CARDS_CSS,  # the source cards, in Gradio's theme colours (light and dark)
        run_history=False,  # no run records, no Hugging Face bucket routes
    )
    keep_path_checks(blocks)
    mounts = [r for r in mounted.routes if isinstance(r, Mount) and r.path == ""]
    if len(mounts) != 1:
        raise RuntimeError("expected exactly one Gradio app mounted at /")
    mounts[0].app = LocalFilesOnly(mounts[0].app)  # inside the app's body limits
    return mounted


def ui_app(
    services: Services,
    throttles: Throttles | None = None,
    assistants: Assistants | None = None,
    parts: ConsoleParts | None = None,
) -> tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[object]]]:
    """The UI as `mount_ui` mounts it (the same checks and limits), for mounting later
    (app.server.ui_deferred): its ASGI app, and the lifespan that starts Gradio's queue."""
    from fastapi import FastAPI

    shell = mount_ui(FastAPI(openapi_url=None), services, throttles, assistants, parts)
    mount = next(r for r in shell.routes if isinstance(r, Mount) and r.path == "")
    return mount.app, lambda: shell.router.lifespan_context(shell)
