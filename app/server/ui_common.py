"""What every tab of the Gradio UI shares: escaping model and document text for the Chatbot,
the message a user sees for an error, and the client address of an event."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import gradio as gr

from app.server.services import BadRequest, NotFound

log = logging.getLogger(__name__)

GENERIC_ERROR = "Something went wrong; the error was logged on the server."
Message = dict[str, Any]

_MD_IMAGE = re.compile(r"!\[")


def as_text(text: str) -> str:
    """Escape HTML so the Chatbot shows tags from the model or a document as text, never markup;
    Markdown (lists, emphasis, the [n] citations) still renders, but not images, which would
    make the browser fetch whatever address a model or document names."""
    return _MD_IMAGE.sub(r"\\![", html.escape(text, quote=False))


def user_error(exc: Exception) -> str:
    """A short message for the user; anything unexpected is logged, never shown."""
    if isinstance(exc, NotFound | BadRequest | ValueError | LookupError):
        return str(exc) or type(exc).__name__
    log.exception("UI handler failed")
    return GENERIC_ERROR


def client_of(request: gr.Request | None) -> str:
    """The client address Gradio saw (the forwarded one when the peer is a trusted proxy)."""
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")
