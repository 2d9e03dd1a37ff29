"""The console's Conversations page: the conversations list, transcripts, export and erasure.
`conversations_page(handlers, gate)` lays it out inside the shell's "Conversations" tab
(app.server.ui_console); its handlers, and what they trust and check, are in
app.server.console_conversations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from app.server.console_conversations import (
    ANY,
    LIST_SIZE,
    OPENED_SIZE,
    RATINGS,
    ConversationsConsole,
)
from app.server.console_transcript import LIST_HEADERS
from app.server.conversation_query import MAX_Q

# the first question takes what the short columns leave (wrapped, so no sideways scrolling)
COLUMN_WIDTHS: list[str | int] = [
    "12%",
    "8%",
    "9%",
    "7%",
    "27%",
    "7%",
    "6%",
    "6%",
    "7%",
    "7%",
    "4%",
]

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate


def conversations_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first."""
    if handlers.parts.conversations is None:
        gr.Markdown("This app was built without the conversations service.")
        return
    page = ConversationsConsole.of(handlers, handlers.parts.conversations, gate)
    layout(page, gate)


def layout(page: ConversationsConsole, gate: Gate) -> None:
    """The page's components and private events (also used by tests with a stand-in shell)."""
    ids, cursor, shown = gr.State([]), gr.State(None), gr.State(None)  # server-side only
    current, pending, pending_email = gr.State(None), gr.State(None), gr.State(None)
    with gr.Row(equal_height=True):
        assistant = gr.Dropdown(
            [("All assistants", ANY)], value=ANY, label="Assistant", elem_id="kbchat-cc-assistant"
        )
        collection = gr.Dropdown(
            [("All knowledge bases", ANY)],
            value=ANY,
            label="Knowledge base",
            elem_id="kbchat-cc-collection",
        )
        language = gr.Textbox(
            label="Language (en, de…)", max_length=35, elem_id="kbchat-cc-language"
        )
        rating = gr.Dropdown(RATINGS, value=ANY, label="Rating", elem_id="kbchat-cc-rating")
    with gr.Row(equal_height=True):
        since = gr.Textbox(
            label="Since (YYYY-MM-DD)", max_length=40, elem_id="kbchat-cc-since", scale=1
        )
        until = gr.Textbox(
            label="Until (YYYY-MM-DD)", max_length=40, elem_id="kbchat-cc-until", scale=1
        )
        q = gr.Textbox(label="Text in a message", max_length=MAX_Q, elem_id="kbchat-cc-q", scale=2)
    with gr.Row(equal_height=True):
        unanswered = gr.Checkbox(label="Unanswered", elem_id="kbchat-cc-unanswered")
        handed_over = gr.Checkbox(label="Handed over", elem_id="kbchat-cc-handed-over")
        lead = gr.Checkbox(label="Left a contact", elem_id="kbchat-cc-lead")
        search = gr.Button("Search", variant="primary", elem_id="kbchat-cc-search")
        refresh = gr.Button("Refresh", elem_id="kbchat-cc-refresh")
    status = gr.Markdown("", elem_id="kbchat-cc-status")
    table = gr.Dataframe(
        headers=LIST_HEADERS,
        datatype="str",
        value=[[""] * len(LIST_HEADERS)],
        interactive=False,
        wrap=True,
        column_widths=COLUMN_WIDTHS,
        label="Conversations (click a row to open it)",
        elem_id="kbchat-cc-list",
    )
    with gr.Row(equal_height=True):
        picker = gr.Dropdown([], label="Open a conversation", elem_id="kbchat-cc-picker", scale=4)
        more = gr.Button("Next page", interactive=False, elem_id="kbchat-cc-next", scale=1)
    with gr.Row():
        export_csv = gr.Button("Export CSV", elem_id="kbchat-cc-export-csv")
        export_json = gr.Button("Export JSON", elem_id="kbchat-cc-export-json")
    exported = gr.File(
        label="Export (the filters above)",
        interactive=False,
        visible=False,
        elem_id="kbchat-cc-export",
    )
    transcript = gr.HTML("", elem_id="kbchat-cc-transcript", js_on_load=None)
    with gr.Row(visible=False, elem_id="kbchat-cc-erase-row") as erase_row:
        erase = gr.Button("Erase this conversation…", variant="stop", elem_id="kbchat-cc-erase")
    with gr.Row(visible=False, elem_id="kbchat-cc-confirm") as confirm_row:
        confirm = gr.Button("Yes, erase it", variant="stop", elem_id="kbchat-cc-confirm-yes")
        cancel = gr.Button("Cancel", elem_id="kbchat-cc-confirm-no")
    with gr.Accordion("Erase a visitor's conversations by email", open=False):
        with gr.Row(equal_height=True):
            email = gr.Textbox(
                label="Email the visitor left", max_length=254, elem_id="kbchat-cc-email", scale=3
            )
            erase_email = gr.Button(
                "Erase by email…", variant="stop", elem_id="kbchat-cc-erase-email", scale=1
            )
        with gr.Row(visible=False, elem_id="kbchat-cc-email-confirm") as email_row:
            confirm_email = gr.Button(
                "Yes, erase them", variant="stop", elem_id="kbchat-cc-email-yes"
            )
            cancel_email = gr.Button("Cancel", elem_id="kbchat-cc-email-no")
        email_status = gr.Markdown("", elem_id="kbchat-cc-email-status")

    filters = [assistant, collection, language, since, until, rating, unanswered, handed_over]
    filters += [lead, q]
    listed = [table, ids, cursor, shown, picker, more, assistant, collection, status]
    opened = [current, transcript, erase_row, status]
    assert len(listed) == LIST_SIZE and len(opened) == OPENED_SIZE
    private: dict[str, Any] = {"api_visibility": "private"}
    state = gate.state
    gate.state.change(page.gate_changed, state, listed, **private)
    gr.on(
        [search.click, refresh.click, q.submit, language.submit],
        page.search,
        [state, *filters],
        listed,
        **private,
    )
    more.click(page.next_page, [state, shown, cursor], listed, **private)
    table.select(page.open_row, [state, ids], opened, **private)
    picker.input(page.open_session, [state, ids, picker], opened, **private)
    export_csv.click(page.export_csv, [state, *filters], [exported, status], **private)
    export_json.click(page.export_json, [state, *filters], [exported, status], **private)
    erase.click(page.ask_erase, [state, current], [pending, confirm_row, status], **private)
    cancel.click(page.cancel, state, [pending, confirm_row, status], **private)
    confirm.click(
        page.confirm_erase, [state, pending, current], [pending, confirm_row, *opened], **private
    ).then(page.reload_quietly, [state, shown], listed[:-1], **private)
    erase_email.click(
        page.ask_erase_email, [state, email], [pending_email, email_row, email_status], **private
    )
    cancel_email.click(page.cancel, state, [pending_email, email_row, email_status], **private)
    confirm_email.click(
        page.confirm_erase_email,
        [state, pending_email],
        [pending_email, email_row, email, email_status],
        **private,
    ).then(page.reload_quietly, [state, shown], listed[:-1], **private)
