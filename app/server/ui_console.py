"""The operator console: the Gradio tab behind the admin key, with one sub-tab per job
(Knowledge, Assistants, Conversations, Learn, Handoff), each page a module of its own
(app.server.ui_console_*) built from the services in `ConsoleHandlers`.

The page is unlocked by the admin key (wrong keys spend the same budget as the admin API). What
unlocks it is a SHA-256 of the key kept in server-side `gr.State` (the `Gate`), and every console
event compares it, in constant time, with the key configured *now*: rotating
KBCHAT_ADMIN_API_KEY locks every page opened with the old one, and no event trusts a flag the
browser could have kept from earlier."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from app.server.access import Throttles
from app.server.ui_common import client_of
from app.server.ui_console_conversations import conversations_page
from app.server.ui_console_handoff import handoff_page
from app.server.ui_console_knowledge import KnowledgeHandlers, knowledge_page
from app.server.ui_console_learn import learn_page

if TYPE_CHECKING:
    from app.server.assistants import Assistants
    from app.server.conversation_admin import ConversationAdmin
    from app.server.handoff import Handoffs
    from app.server.insights import InsightsService
    from app.server.services import Services

log = logging.getLogger(__name__)

ADMIN_DISABLED = "The console is disabled until KBCHAT_ADMIN_API_KEY is set on the server."
CONSOLE_LOCKED = "Unlock the console with the admin key first."
ADMIN_THROTTLED = "Too many wrong keys; try again in {s} s."
UNLOCKED = "Console unlocked."


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_admin_key(configured: Any, given: str | None) -> tuple[bool, str]:
    """(unlocked, message) for a key typed into the console; constant-time comparison."""
    if configured is None:
        return False, ADMIN_DISABLED
    expected = configured.get_secret_value()
    if not expected:
        return False, ADMIN_DISABLED
    if isinstance(given, str) and secrets.compare_digest(given.encode(), expected.encode()):
        return True, UNLOCKED
    return False, "Wrong admin key."


class Gate:
    """What every console event passes first (`state`) and checks (`check`) before acting."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.state = gr.State(None)  # the unlocking key's SHA-256 (hex), server-side only

    def is_open(self, state: Any) -> bool:
        """True while `state` holds the digest of the key configured now (read at each call,
        so a rotated key locks old pages)."""
        configured = self.services.settings.admin_api_key
        key = configured.get_secret_value() if configured is not None else ""
        if not key or not isinstance(state, str):
            return False
        return secrets.compare_digest(state.encode(), key_digest(key).encode())

    def check(self, state: Any) -> None:
        """gr.Error (a short message on the page) unless the page is unlocked."""
        if not self.is_open(state):
            raise gr.Error(CONSOLE_LOCKED)


@dataclass(frozen=True)
class ConsoleParts:
    """The operator services the console's pages read and act through (the app's, the same
    ones its admin API routes use); a page without its part says so instead of failing."""

    conversations: ConversationAdmin | None = None
    insights: InsightsService | None = None
    handoffs: Handoffs | None = None


class ConsoleHandlers:
    """The console's own events (unlock) and what its pages are built from: the services,
    the throttles, the assistants registry (None when the app has none) and the other parts."""

    def __init__(
        self,
        services: Services,
        throttles: Throttles,
        assistants: Assistants | None = None,
        parts: ConsoleParts | None = None,
    ) -> None:
        self.services, self.throttles, self.assistants = services, throttles, assistants
        self.parts = parts or ConsoleParts()
        self.settings = services.settings

    def unlock(self, key: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: gate state, console panel, key box, status. Wrong keys spend the client's
        admin-failure budget, shared with the admin API; beyond it no key is even compared."""
        configured = self.services.settings.admin_api_key
        client = client_of(request)
        wait = self.throttles.admin_locked(client)
        if wait is not None and configured is not None:
            return None, gr.update(visible=False), "", ADMIN_THROTTLED.format(s=wait)
        ok, msg = check_admin_key(configured, key)
        if not ok:
            if configured is not None:
                self.throttles.admin_failed(client)
            return None, gr.update(visible=False), "", msg
        assert isinstance(key, str)  # checked by check_admin_key
        return key_digest(key), gr.update(visible=True), "", msg


def _assistants_page(handlers: ConsoleHandlers, gate: Gate) -> bool:
    """Build the Assistants page (app.server.ui_console_assistants); False when the app has no
    assistants registry to edit."""
    from app.server.console_assistants import AssistantsConsole
    from app.server.ui_console_assistants import assistants_page

    if handlers.assistants is None:
        return False
    assistants_page(AssistantsConsole.of(handlers.assistants, handlers.services), gate)
    return True


def console_tab(handlers: ConsoleHandlers, chat_collection: gr.Dropdown) -> Gate:
    """Lay out the console (inside an open gr.Tab) and wire its private events; changes to the
    knowledge bases refresh the chat tab's list."""
    gate = Gate(handlers.services)
    private: dict[str, Any] = {"api_visibility": "private"}
    with gr.Row():
        key = gr.Textbox(label="Admin key", type="password", elem_id="kbchat-console-key", scale=4)
        unlock = gr.Button("Unlock", elem_id="kbchat-console-unlock", scale=1)
    status = gr.Markdown("", elem_id="kbchat-console-status")
    with gr.Column(visible=False, elem_id="kbchat-console") as panel, gr.Tabs():
        with gr.Tab("Knowledge", id="console-knowledge", elem_id="kbchat-console-knowledge"):
            knowledge = knowledge_page(
                KnowledgeHandlers(handlers.services, gate), gate, chat_collection
            )
        with gr.Tab("Assistants", id="console-assistants", elem_id="kbchat-console-assistants"):
            if not _assistants_page(handlers, gate):
                gr.Markdown("This app was built without an assistants registry.")
        with gr.Tab(
            "Conversations", id="console-conversations", elem_id="kbchat-console-conversations"
        ):
            conversations_page(handlers, gate)
        with gr.Tab("Learn", id="console-learn", elem_id="kbchat-console-learn"):
            learn_page(handlers, gate)
        with gr.Tab("Handoff", id="console-handoff", elem_id="kbchat-console-handoff"):
            handoff_page(handlers, gate)
    opened = gr.on(
        [unlock.click, key.submit],
        handlers.unlock,
        key,
        [gate.state, panel, key, status],
        **private,
    )
    knowledge.load_after(opened)
    return gate
