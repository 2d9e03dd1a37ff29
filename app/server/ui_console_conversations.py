"""The console's Conversations page: the conversations list, transcripts, export and erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate


def conversations_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first."""
    if handlers.parts.conversations is None:
        gr.Markdown("This app was built without the conversations service.")
        return
    gr.Markdown("Conversations: coming.")
