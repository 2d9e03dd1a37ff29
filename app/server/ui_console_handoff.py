"""The console's Handoff page: the queue of conversations handed to a person, the operator's
replies, and handing back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate


def handoff_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first."""
    if handlers.parts.handoffs is None:
        gr.Markdown("This app was built without the handoff service.")
        return
    gr.Markdown("Handoff: coming.")
