"""The console's Handoff page: the queue of conversations handed to a person, the operator's
replies, and handing back. The handlers, and what they trust and check, are in
app.server.console_handoff; this module only lays the page out and wires its private events.

A gr.Timer refreshes the queue and the picked transcript every few seconds while the console is
unlocked and this tab is the one shown (the parent Tabs' select turns it on and off), and
announces new handoffs with gr.Info."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio.context import Context

from app.server.console_handoff import EMPTY, QUEUE_COLUMNS, TICK_S, HandoffConsole

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate


def handoff_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first."""
    if handlers.parts.handoffs is None:
        gr.Markdown("This app was built without the handoff service.")
        return
    tab = Context.block  # the shell's open "Handoff" tab
    page = HandoffConsole(handlers.parts.handoffs, handlers.parts.conversations, gate)
    current, seen, pending = gr.State(None), gr.State(None), gr.State(None)
    timer = gr.Timer(TICK_S, active=False)
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(
            label="Conversation (waiting first, then active)",
            choices=[],
            value=None,
            elem_id="kbchat-ho-picker",
            scale=4,
        )
        refresh = gr.Button("Refresh", elem_id="kbchat-ho-refresh", scale=1)
    status = gr.Markdown("", elem_id="kbchat-ho-status")
    queue = gr.Dataframe(
        headers=QUEUE_COLUMNS,
        value=[[""] * len(QUEUE_COLUMNS)],
        datatype="str",
        interactive=False,
        elem_id="kbchat-ho-queue",
    )
    with gr.Row():
        with gr.Column(scale=3):
            transcript = gr.HTML(EMPTY, elem_id="kbchat-ho-transcript", js_on_load=None)
            reply = gr.Textbox(
                label="Reply to the visitor (their widget shows it)",
                lines=3,
                max_length=4000,
                elem_id="kbchat-ho-reply",
            )
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="kbchat-ho-send")
                back = gr.Button("Hand back to the assistant…", elem_id="kbchat-ho-back")
            with gr.Row(visible=False, elem_id="kbchat-ho-confirm") as confirm_row:
                confirm = gr.Button("Yes, hand it back", variant="stop", elem_id="kbchat-ho-yes")
                cancel = gr.Button("Cancel", elem_id="kbchat-ho-no")
        with gr.Column(scale=2), gr.Group():
            recent = gr.Dropdown(
                label="Take over a conversation (recent ones, or type a session id)",
                choices=[],
                allow_custom_value=True,
                elem_id="kbchat-ho-recent",
            )
            take = gr.Button("Take over", elem_id="kbchat-ho-take")

    shown = [queue, picker, transcript, recent, seen, status]
    private: dict[str, Any] = {"api_visibility": "private"}
    gate.state.change(page.gate_changed, [gate.state, current, seen], shown, **private)
    refresh.click(page.refresh, [gate.state, current, seen], shown, **private)
    timer.tick(page.tick, [gate.state, current, seen], [*shown, timer], **private)
    if isinstance(tab, gr.Tab) and isinstance(tab.parent, gr.Tabs):
        tabs, names = tab.parent, {tab.label, tab.id}
        position = tabs.children.index(tab)

        def selected(state: Any, data: gr.SelectData) -> Any:
            ours = data.value in names or data.index in (position, tab.id)
            return page.tab_selected(state, ours)

        tabs.select(selected, [gate.state], timer, **private)
    picker.input(page.pick, [gate.state, picker], [current, transcript, status], **private)
    take.click(page.take_over, [gate.state, recent, seen], [current, *shown], **private)
    gr.on(
        [send.click, reply.submit],
        page.reply,
        [gate.state, current, reply, seen],
        [reply, *shown],
        **private,
    )
    back.click(page.ask_hand_back, [gate.state, current], [pending, confirm_row, status], **private)
    cancel.click(page.cancel_hand_back, [gate.state], [pending, confirm_row, status], **private)
    confirm.click(
        page.confirm_hand_back,
        [gate.state, pending, current, seen],
        [pending, confirm_row, current, *shown],
        **private,
    )
