"""The console's Learn page: top questions, content gaps, source usage and quality over time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate


def learn_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first."""
    if handlers.parts.insights is None:
        gr.Markdown("This app was built without the learn service.")
        return
    gr.Markdown("Learn: coming.")
