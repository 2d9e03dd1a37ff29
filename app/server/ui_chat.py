"""The Gradio chat tab: an assistant picker, the knowledge base, the streamed conversation with
one like/dislike per answer, suggested-question chips, and the last answer's source cards.

The conversation shown lives in server-side `gr.State` (the Chatbot is only ever an output), and
so do the chosen assistant and its chips: a browser sends the dropdown's value once, when it picks,
and a chip click names only its position, so a forged id or question is never asked or answered.
Lead capture is not asked here: this is the team's own surface, next to its admin tab."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import gradio as gr
from fastapi import HTTPException

from app.chat.types import Token
from app.observability.request_id import HEADER as REQUEST_ID
from app.observability.request_id import with_request_id
from app.server.access import Throttles
from app.server.assistant_access import spend_caps
from app.server.assistant_schema import MAX_SUGGESTIONS
from app.server.assistants import AssistantKey, AssistantNotFound
from app.server.services import Completed
from app.server.ui_assistant import choices, ui_key, welcome
from app.server.ui_common import Message, as_text, client_of, user_error
from app.server.ui_sources import source_cards

if TYPE_CHECKING:
    from app.server.assistants import Assistants
    from app.server.handoff import Handoffs
    from app.server.services import Services

RATE_LIMITED = "⚠ Too many requests; try again in {s} s."
WITH_A_PERSON = "A person has this conversation now; your message was passed on to them."
Vote = Literal["up", "down"]
NO_ASSISTANTS: list[tuple[str, str]] = [("None (knowledge base only)", "")]


@dataclass
class ChatTab:
    """The components another part of the page updates (the console's knowledge-base changes)."""

    collection: gr.Dropdown


def header_html(name: str, avatar: str | None) -> str:
    """The chosen assistant's avatar and name; the avatar is a validated path or https URL."""
    if not name:
        return ""
    img = (
        f'<img src="{html.escape(avatar, quote=True)}" alt="" width="32" height="32" '
        'referrerpolicy="no-referrer" style="border-radius:50%;vertical-align:middle">'
        if avatar
        else ""
    )
    return (
        f'<div class="kbchat-assistant" dir="auto">{img} <strong>{html.escape(name)}</strong></div>'
    )


class ChatHandlers:
    """Every handler of the chat tab, over the app's services, throttles and assistants."""

    def __init__(
        self,
        services: Services,
        throttles: Throttles,
        assistants: Assistants | None,
        handoffs: Handoffs | None = None,
    ) -> None:
        """`handoffs`: while one of the session is waiting or active, no LLM answers here
        either (as /api/chat): the message is stored for the person who has it."""
        self.services, self.throttles, self.assistants = services, throttles, assistants
        self.handoffs = handoffs
        self.settings = services.settings

    # ------------------------------------------------------------------ lists
    def collection_names(self) -> list[str]:
        return [str(c["name"]) for c in self.services.collections()]

    def pick_collection(self, names: list[str], current: str | None) -> str | None:
        for candidate in (current, self.settings.collection):
            if candidate and candidate in names:
                return candidate
        return names[0] if names else self.settings.collection

    def _key(self, assistant: object) -> AssistantKey | None:
        if self.assistants is None:
            if assistant:
                raise AssistantNotFound("That assistant does not exist; choose another one.")
            return None
        return ui_key(self.assistants, assistant)

    def refresh_lists(self, current: str | None, assistant: str | None) -> tuple[Any, Any]:
        """Outputs: knowledge-base dropdown, assistant dropdown (on load and ↻ Refresh)."""
        try:
            names = self.collection_names()
        except Exception as exc:
            gr.Warning(f"Could not list collections: {user_error(exc)}")
            return gr.skip(), gr.skip()
        try:
            options = choices(self.assistants) if self.assistants else NO_ASSISTANTS
        except Exception as exc:
            gr.Warning(f"Could not list assistants: {user_error(exc)}")
            options = NO_ASSISTANTS
        chosen = assistant if assistant in {v for _, v in options} else ""
        key = None
        if chosen:
            try:
                key = self._key(chosen)
            except AssistantNotFound:
                chosen = ""
        if key is not None:
            kb = key.settings.collection or self.settings.collection
            collection = gr.Dropdown(choices=names, value=kb, interactive=False)
        else:
            collection = gr.Dropdown(
                choices=names, value=self.pick_collection(names, current), interactive=True
            )
        return collection, gr.Dropdown(choices=options, value=chosen)

    # -------------------------------------------------------------- assistant
    def choose_assistant(self, value: Any, current: str | None, request: gr.Request) -> tuple:
        """Outputs: assistant state, chips state, knowledge base, header, chatbot, history,
        sources, session id, message ids, status, then one update per chip. Choosing starts a
        new conversation; an id that is no assistant is refused with a message, nothing else."""
        try:
            key = self._key(value)
        except AssistantNotFound as exc:
            gr.Warning(str(exc))
            key, status = None, str(exc)
        else:
            status = ""
        if key is None:
            kb = gr.update(value=current or self.settings.collection, interactive=True)
            chips = [gr.update(visible=False, value="") for _ in range(MAX_SUGGESTIONS)]
            return (None, [], kb, "", [], [], "", None, {}, status, *chips)
        accept = request.headers.get("accept-language") if request is not None else None
        shown = welcome(key, accept)
        kb = gr.update(value=shown.collection or self.settings.collection, interactive=False)
        chat: list[Message] = (
            [{"role": "assistant", "content": as_text(shown.greeting)}] if shown.greeting else []
        )
        chips = [
            gr.update(visible=i < len(shown.suggestions), value=text)
            for i, text in enumerate([*shown.suggestions, *[""] * MAX_SUGGESTIONS])
        ][:MAX_SUGGESTIONS]
        header = header_html(shown.name, shown.avatar)
        chatbot = gr.update(value=chat, label=shown.name)
        return (key.assistant, shown.suggestions, kb, header, chatbot, chat, "", None, {},
                status, *chips)  # fmt: skip

    def new_conversation(self, assistant: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: chatbot, history, sources, session id, message ids, status. The chosen
        assistant greets again."""
        chat: list[Message] = []
        try:
            key = self._key(assistant)
        except AssistantNotFound:
            key = None
        if key is not None:
            accept = request.headers.get("accept-language") if request is not None else None
            greeting = welcome(key, accept).greeting
            if greeting:
                chat = [{"role": "assistant", "content": as_text(greeting)}]
        return chat, list(chat), "", None, {}, ""

    # ------------------------------------------------------------------- chat
    def respond(
        self,
        message: str,
        history: list[Message] | None,
        session_id: str | None,
        collection: str | None,
        message_ids: dict[int, int] | None,
        assistant: str | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: input box, chatbot, history, sources, session id, message ids. `history`
        and `assistant` are server-side state: what the chatbot shows is never read back."""
        skip = gr.skip()
        text = message.strip() if isinstance(message, str) else ""
        if not text:
            yield (skip,) * 6
            return
        chat: list[Message] = [*(history or []), {"role": "user", "content": as_text(text)}]

        def refuse(reason: str) -> tuple[Any, ...]:
            chat.append({"role": "assistant", "content": as_text(f"⚠ {reason}")})
            return skip, chat, chat, skip, skip, skip

        try:
            key = self._key(assistant)
        except AssistantNotFound as exc:
            yield refuse(str(exc))
            return
        wait = self.throttles.spend_chat(client_of(request))  # as /api/chat and /v1
        if wait is not None:
            self.services.metrics.rate_limited.labels("ui").inc()
            chat.append({"role": "assistant", "content": RATE_LIMITED.format(s=wait)})
            yield skip, chat, chat, skip, skip, skip
            return
        if self.handoffs is not None and session_id:
            try:
                if self.handoffs.open_state(session_id) is not None:
                    self.handoffs.store_visitor_message(session_id, text)
                    chat.append({"role": "assistant", "content": as_text(WITH_A_PERSON)})
                    yield "", chat, chat, skip, skip, skip
                    return
            except Exception as exc:
                yield refuse(user_error(exc))
                return
        options = None
        if key is not None:
            chosen: str | None = key.settings.collection or self.settings.collection
            try:  # the assistant's caps, the API's budgets
                spend_caps(self.throttles, key, session_id)
            except HTTPException as exc:
                yield refuse(str(exc.detail))
                return
            options = key.answer_options(self.settings)
        else:
            chosen = collection if isinstance(collection, str) and collection else None
        chat.append({"role": "assistant", "content": ""})
        ids = dict(message_ids or {})
        answer = ""
        yield "", chat, chat, skip, skip, skip
        try:
            events = self.services.chat(
                text,
                session_id=session_id,
                collection=chosen,
                options=options,
                assistant=key.assistant if key is not None else None,  # the session records it
            )
            # the id of the request that queued this turn (asgi-correlation-id wrote it there)
            request_id = request.headers.get(REQUEST_ID) if request is not None else None
            for event in with_request_id(events, request_id):
                if isinstance(event, Token):
                    answer += event.text
                    chat[-1] = {"role": "assistant", "content": as_text(answer)}
                    yield skip, chat, skip, skip, skip, skip
                elif isinstance(event, Completed):
                    result = event.result
                    chat[-1] = {"role": "assistant", "content": as_text(result.answer or answer)}
                    ids[len(chat) - 1] = event.message_id
                    cards = source_cards(result.sources, result.cited)
                    yield skip, chat, chat, cards, event.session_id, ids
        except Exception as exc:
            reply = f"{answer}\n\n" if answer else ""
            chat[-1] = {"role": "assistant", "content": as_text(f"{reply}⚠ {user_error(exc)}")}
            yield skip, chat, chat, skip, skip, skip

    def chip(self, index: int) -> Callable[..., Iterator[tuple[Any, ...]]]:
        """The handler of chip `index`: asks the question the server gave that chip, if any."""

        def ask_chip(
            chips: list[str] | None,
            history: list[Message] | None,
            session_id: str | None,
            collection: str | None,
            message_ids: dict[int, int] | None,
            assistant: str | None,
            request: gr.Request,
        ) -> Iterator[tuple[Any, ...]]:
            if not isinstance(chips, list) or index >= len(chips):
                yield (gr.skip(),) * 6
                return
            yield from self.respond(
                chips[index], history, session_id, collection, message_ids, assistant, request
            )

        ask_chip.__name__ = f"ask_chip_{index}"
        return ask_chip

    # --------------------------------------------------------------- feedback
    def rate(self, session_id: str | None, message_id: int | None, vote: Vote) -> str:
        if message_id is None or session_id is None:
            return "No answer to rate yet."
        try:
            self.services.conversations.add_feedback(session_id, message_id, vote)
        except Exception as exc:
            msg = user_error(exc)
            gr.Warning(msg)
            return f"Feedback not saved: {msg}"
        word = "helpful" if vote == "up" else "not helpful"
        done = f"Thanks for the feedback ({word}): saved with this answer."
        gr.Info(done)
        return done

    def on_like(
        self, session_id: str | None, message_ids: dict[int, int] | None, data: gr.LikeData
    ) -> Any:
        """LikeData comes from the client as is: only an int index and a bool vote are used."""
        if data.liked is True or data.liked is False:
            index = data.index[0] if isinstance(data.index, list | tuple) else data.index
            if not isinstance(index, int) or isinstance(index, bool):
                return "This answer cannot be rated."
            message_id = (message_ids or {}).get(index)
            if message_id is None:
                return "This answer cannot be rated."
            return self.rate(session_id, message_id, "up" if data.liked else "down")
        return gr.skip()  # an undone like: nothing to store


def chat_tab(handlers: ChatHandlers, blocks: gr.Blocks) -> ChatTab:
    """Lay out the chat tab (inside an open gr.Tab of `blocks`) and wire its events; every
    event is private: the page calls them by index, no client needs them by name."""
    settings = handlers.settings
    history = gr.State([])
    session_state = gr.State(None)
    message_ids = gr.State({})
    assistant_state = gr.State(None)
    chips_state = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                assistant = gr.Dropdown(
                    choices=NO_ASSISTANTS,
                    value="",
                    label="Assistant",
                    elem_id="kbchat-assistant",
                    scale=3,
                )
                collection = gr.Dropdown(
                    choices=[settings.collection],
                    value=settings.collection,
                    label="Knowledge base",
                    allow_custom_value=True,
                    elem_id="kbchat-collection",
                    scale=3,
                )
                refresh = gr.Button("↻ Refresh", elem_id="kbchat-refresh", scale=1, size="sm")
            header = gr.HTML("", elem_id="kbchat-assistant-header")
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
            with gr.Row(elem_id="kbchat-chips"):
                chips = [
                    gr.Button(
                        "", visible=False, size="sm", elem_classes=["kbchat-chip"], min_width=80
                    )
                    for _ in range(MAX_SUGGESTIONS)
                ]
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
                new = gr.Button("New conversation", elem_id="kbchat-new", size="sm")
            feedback_status = gr.Markdown("", elem_id="kbchat-feedback-status")
        with gr.Column(scale=2):
            gr.Markdown("**Sources of the last answer**")
            sources = gr.HTML("", elem_id="kbchat-sources")

    private: dict[str, Any] = {"api_visibility": "private"}
    lists = [collection, assistant_state]
    blocks.load(handlers.refresh_lists, lists, [collection, assistant], **private)
    refresh.click(handlers.refresh_lists, lists, [collection, assistant], **private)
    assistant.input(
        handlers.choose_assistant,
        [assistant, collection],
        [assistant_state, chips_state, collection, header, chatbot, history, sources,
         session_state, message_ids, feedback_status, *chips],
        **private,
    )  # fmt: skip
    asked = [history, session_state, collection, message_ids, assistant_state]
    answered = [box, chatbot, history, sources, session_state, message_ids]
    streaming: dict[str, Any] = {
        **private,
        "concurrency_limit": 16,
        "concurrency_id": "kbchat-chat",
        "show_progress": "minimal",
    }
    gr.on([box.submit, send.click], handlers.respond, [box, *asked], answered, **streaming)
    for i, chip in enumerate(chips):
        chip.click(handlers.chip(i), [chips_state, *asked], answered, **streaming)
    cleared = [chatbot, history, sources, session_state, message_ids, feedback_status]
    new.click(handlers.new_conversation, assistant_state, cleared, **private)
    chatbot.clear(handlers.new_conversation, assistant_state, cleared, **private)
    chatbot.like(handlers.on_like, [session_state, message_ids], feedback_status, **private)
    return ChatTab(collection=collection)
