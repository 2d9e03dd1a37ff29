"""The console's Assistants page: pick, create, edit and delete assistants, their widget keys,
and a live preview of the widget as visitors see it, beside the form. `assistants_page(handlers,
gate)` lays it out inside the console shell's "Assistants" tab (app.server.ui_console); the
handlers, and what they trust and check, are in app.server.console_assistants."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.server.console_assistants import (
    KEY_COLUMNS,
    LOAD_SIZE,
    NO_ASSISTANT,
    AssistantsConsole,
    Gate,
    placeholder,
)

__all__ = ["AssistantsConsole", "Gate", "assistants_page"]


def assistants_page(handlers: AssistantsConsole, gate: Gate) -> None:
    """Lay out the page (inside the shell's open "Assistants" tab) and wire its private events,
    each with the gate's state first. The list fills when the shell unlocks."""
    handlers.gate = gate
    current, texts, shown, pending = gr.State(None), gr.State({}), gr.State("en"), gr.State(None)
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(
            label="Assistant", choices=[], value=None, elem_id="kbchat-ca-picker", scale=4
        )
        refresh = gr.Button("Refresh", elem_id="kbchat-ca-refresh", scale=1)
    with gr.Accordion("New assistant", open=False, elem_id="kbchat-ca-new"), gr.Row():
        new_id = gr.Textbox(label="Id (a-z, 0-9, -)", max_length=64, elem_id="kbchat-ca-new-id")
        new_name = gr.Textbox(label="Name", max_length=80, elem_id="kbchat-ca-new-name")
        create = gr.Button("Create", variant="primary", elem_id="kbchat-ca-create")
    status = gr.Markdown("", elem_id="kbchat-ca-status")
    with gr.Row(visible=False, elem_id="kbchat-ca-editor") as editor:
        with gr.Column(scale=3):
            form = _form()
            with gr.Row():
                lang = gr.Dropdown(
                    label="Language of the texts below (type a code to add one)",
                    allow_custom_value=True,
                    elem_id="kbchat-ca-lang",
                )
            greeting = gr.Textbox(
                label="Greeting", lines=2, max_length=600, elem_id="kbchat-ca-greeting"
            )
            suggestions = gr.Textbox(
                label="Suggested questions (one per line, at most 6)",
                lines=3,
                elem_id="kbchat-ca-suggestions",
            )
            consent = gr.Textbox(
                label="Lead capture consent text",
                lines=2,
                max_length=1000,
                elem_id="kbchat-ca-consent",
            )
            with gr.Row():
                save = gr.Button("Save", variant="primary", elem_id="kbchat-ca-save")
                delete = gr.Button("Delete…", variant="stop", elem_id="kbchat-ca-delete")
            with gr.Row(visible=False, elem_id="kbchat-ca-confirm") as confirm_row:
                confirm = gr.Button(
                    "Yes, delete it", variant="stop", elem_id="kbchat-ca-confirm-yes"
                )
                cancel = gr.Button("Cancel", elem_id="kbchat-ca-confirm-no")
            with gr.Accordion("Widget keys", open=True):
                keys = gr.Dataframe(
                    headers=KEY_COLUMNS,
                    value=[["", "", ""]],
                    interactive=False,
                    elem_id="kbchat-ca-keys",
                )
                origins = gr.Textbox(
                    label="Origins for a new key (one per line, https://site.example; "
                    "none: this server's pages only)",
                    lines=2,
                    elem_id="kbchat-ca-origins",
                )
                add_key = gr.Button("Create key", elem_id="kbchat-ca-add-key")
                new_key = gr.Textbox(
                    label="New key: copy it now, it is not shown again",
                    interactive=False,
                    visible=False,
                    buttons=["copy"],
                    elem_id="kbchat-ca-new-key",
                )
                with gr.Row():
                    revoke_id = gr.Dropdown(
                        label="Key to revoke", choices=[], elem_id="kbchat-ca-revoke-id"
                    )
                    revoke = gr.Button("Revoke", variant="stop", elem_id="kbchat-ca-revoke")
        with gr.Column(scale=2):
            gr.Markdown("**Preview**: the widget as visitors see it, as saved (look only, no chat)")
            preview = gr.HTML(
                placeholder(NO_ASSISTANT), elem_id="kbchat-ca-preview", js_on_load=None
            )
            reload = gr.Button("Reload preview", elem_id="kbchat-ca-reload")

    boxes = [greeting, suggestions, consent]
    loaded = [
        current,
        picker,
        editor,
        *form,
        texts,
        shown,
        lang,
        *boxes,
        keys,
        revoke_id,
        new_key,
        preview,
        status,
    ]
    assert len(loaded) == LOAD_SIZE
    private: dict[str, Any] = {"api_visibility": "private"}
    gate.state.change(handlers.gate_changed, [gate.state, current], loaded, **private)
    refresh.click(handlers.refresh, [gate.state, current], loaded, **private)
    picker.input(handlers.select, [gate.state, picker], loaded, **private)
    gr.on(
        [create.click, new_id.submit],
        handlers.create,
        [gate.state, new_id, new_name],
        loaded,
        **private,
    )
    save.click(handlers.save, [gate.state, current, texts, shown, *form, *boxes], loaded, **private)
    lang.input(
        handlers.switch_language,
        [gate.state, texts, shown, *boxes, lang],
        [texts, shown, lang, *boxes, status],
        **private,
    )
    delete.click(
        handlers.ask_delete, [gate.state, current], [pending, confirm_row, status], **private
    )
    confirm.click(
        handlers.confirm_delete,
        [gate.state, pending, current],
        [*loaded, pending, confirm_row],
        **private,
    )
    cancel.click(handlers.cancel_delete, [gate.state], [pending, confirm_row, status], **private)
    add_key.click(
        handlers.create_key,
        [gate.state, current, origins],
        [keys, revoke_id, new_key, origins, status],
        **private,
    )
    revoke.click(
        handlers.revoke_key, [gate.state, current, revoke_id], [keys, revoke_id, status], **private
    )
    reload.click(handlers.reload_preview, [gate.state, current], preview, **private)


def _form() -> list[Any]:
    """The settings' components, in FIELDS order."""
    with gr.Group():
        with gr.Row():
            name = gr.Textbox(label="Name", max_length=80, elem_id="kbchat-ca-name")
            avatar = gr.Textbox(
                label="Avatar URL (/path or https://)", max_length=2048, elem_id="kbchat-ca-avatar"
            )
        with gr.Row():
            color = gr.ColorPicker(label="Colour", elem_id="kbchat-ca-color")
            position = gr.Radio(["right", "left"], label="Position", elem_id="kbchat-ca-position")
            theme = gr.Radio(["auto", "light", "dark"], label="Theme", elem_id="kbchat-ca-theme")
            default_language = gr.Textbox(
                label="Default language", max_length=35, elem_id="kbchat-ca-default-language"
            )
    instructions = gr.Textbox(
        label="Persona and tone (never shown to visitors)",
        lines=3,
        max_length=4000,
        elem_id="kbchat-ca-instructions",
    )
    with gr.Row():
        model = gr.Dropdown(label="Model", choices=[], elem_id="kbchat-ca-model")
        collection = gr.Dropdown(label="Knowledge base", choices=[], elem_id="kbchat-ca-collection")
    with gr.Row():
        session_messages = gr.Number(
            label="Cap: messages per conversation (0: none)",
            precision=0,
            minimum=0,
            elem_id="kbchat-ca-session-cap",
        )
        daily_messages = gr.Number(
            label="Cap: messages per key per day (0: none)",
            precision=0,
            minimum=0,
            elem_id="kbchat-ca-daily-cap",
        )
    with gr.Group(), gr.Row():
        lead_mode = gr.Radio(
            ["off", "before", "after"], label="Lead capture", elem_id="kbchat-ca-lead-mode"
        )
        lead_after = gr.Number(
            label="Ask after N answers",
            precision=0,
            minimum=1,
            maximum=50,
            elem_id="kbchat-ca-lead-after",
        )
        webhook_url = gr.Textbox(
            label="Lead webhook URL (https://)", max_length=2048, elem_id="kbchat-ca-webhook"
        )
    fullpage = gr.Checkbox(label="Full page at /a/{id}", elem_id="kbchat-ca-fullpage")
    handoff = _handoff_form()
    return [
        name,
        avatar,
        color,
        position,
        theme,
        default_language,
        instructions,
        model,
        collection,
        session_messages,
        daily_messages,
        lead_mode,
        lead_after,
        webhook_url,
        fullpage,
        *handoff,
    ]


def _handoff_form() -> list[Any]:
    """The handoff settings' components, in HANDOFF_FIELDS order."""
    with gr.Accordion("Human handoff", open=False, elem_id="kbchat-ca-handoff"):
        with gr.Row():
            enabled = gr.Checkbox(
                label="Visitors may ask for a person", elem_id="kbchat-ca-handoff-enabled"
            )
            offer_after = gr.Number(
                label="Offer a person after N unanswered (0: never)",
                precision=0,
                minimum=0,
                maximum=20,
                elem_id="kbchat-ca-handoff-offer",
            )
        with gr.Row():
            timezone = gr.Textbox(
                label="Time zone of the hours (IANA, e.g. Europe/Madrid)",
                max_length=64,
                elem_id="kbchat-ca-handoff-tz",
            )
            email = gr.Textbox(
                label="Notify email (needs KBCHAT_SMTP_HOST)",
                max_length=254,
                elem_id="kbchat-ca-handoff-email",
            )
        schedule = gr.Textbox(
            label="Opening hours: one weekday per line (mon 09:00-13:00 14:00-18:00); "
            "empty: always open",
            lines=3,
            max_length=1000,
            elem_id="kbchat-ca-handoff-schedule",
        )
        offline = gr.Textbox(
            label="Offline message: one language per line (es: Volvemos el lunes.); "
            "empty: says when the team is back",
            lines=2,
            max_length=25600,
            elem_id="kbchat-ca-handoff-offline",
        )
    return [enabled, offer_after, timezone, schedule, offline, email]
