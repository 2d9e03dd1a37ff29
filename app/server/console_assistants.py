"""The handlers of the console's Assistants page (laid out by app.server.ui_console_assistants):
pick, create, edit and delete assistants, their widget keys, and the widget preview.

Every event is private and checks the shell's gate first (`gate.check(state)` raises gr.Error
while the page is locked). Nothing the browser sends is trusted: the assistant being edited is
server-side state set only by picking one from the server's list, and ids, models, knowledge
bases and key ids are checked against the server's lists again. Writes go through the same
Assistants service as the admin API; errors are short messages, never tracebacks.

The preview is an iframe of `/a/{id}?preview=TOKEN` (app.server.routes_fullpage): the full page
that the server already serves (its CSP allows being framed by this origin only), which shows
the assistant as saved whether or not its full page is on. The frame is sandboxed with scripts
but without its origin, so nothing in it can reach the unlocked console's page or storage (and
it cannot chat: the server takes key-less chats from same-origin pages only). The token is
minted here, only for an unlocked page, and names one assistant for a while
(app.server.preview_token). After each save the iframe gets a new address, so it reloads with
the saved settings."""

from __future__ import annotations

import html
import itertools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import gradio as gr
from pydantic import ValidationError

from app.server import preview_token
from app.server.assistant_schema import (
    SLUG_PATTERN,
    AssistantCreate,
    AssistantOut,
    AssistantSettings,
    KeyCreate,
)
from app.server.assistants import AssistantNotFound, Assistants, allowed_models
from app.server.console_assistant_form import (
    FIELDS,
    FormError,
    form_values,
    language,
    plain,
    put_texts,
    readable,
    settings_from,
    texts_of,
)
from app.server.ui_common import user_error

if TYPE_CHECKING:
    from app.server.services import Services
    from app.settings import Settings

log = logging.getLogger(__name__)

_SLUG = re.compile(SLUG_PATTERN)
_KEY_ID = re.compile(r"^key_[0-9a-f]{1,32}$")
LOCKED = "Unlock the console first."
NO_ASSISTANT = "Pick an assistant first."
NOT_FOUND = "No such assistant."
# LOAD: current, picker, editor, FIELDS..., texts, shown, language, greeting, suggestions,
# consent, keys table, revoke choice, new key, preview, status
LOAD_SIZE = 3 + len(FIELDS) + 3 + 3 + 5
KEY_COLUMNS = ["Key id", "Origins", "Created (UTC)"]


class Gate(Protocol):
    """The console shell's lock (app.server.ui_console)."""

    state: Any

    def check(self, state: Any) -> None: ...


class _Unbound:
    """Until assistants_page binds the shell's gate, every event is refused."""

    state: Any = None

    def check(self, state: Any) -> None:
        raise gr.Error(LOCKED)


class AssistantsConsole:
    """The page's handlers. Each takes the gate's state first and returns its outputs in the
    order wired by assistants_page; `collections` lists the server's knowledge bases."""

    def __init__(
        self,
        assistants: Assistants,
        settings: Settings,
        collections: Callable[[], list[str]] | None = None,
    ) -> None:
        self.assistants, self.settings = assistants, settings
        self._collections = collections or (lambda: [])
        self.gate: Gate = _Unbound()
        self._reloads = itertools.count(1)

    @classmethod
    def of(cls, assistants: Assistants, services: Services) -> AssistantsConsole:
        return cls(
            assistants, services.settings, lambda: [str(c["name"]) for c in services.collections()]
        )

    # ------------------------------------------------------------ assistants
    def gate_changed(self, state: Any, current: Any) -> tuple[Any, ...]:
        """The shell locked or unlocked: fill the list, or clear the page."""
        try:
            self.gate.check(state)
        except gr.Error:
            return self._load(None, "", locked=True)
        return self._load(self._find(current), "")

    def refresh(self, state: Any, current: Any) -> tuple[Any, ...]:
        self.gate.check(state)
        return self._load(self._find(current), "")

    def select(self, state: Any, chosen: Any) -> tuple[Any, ...]:
        self.gate.check(state)
        if chosen in (None, ""):
            return self._load(None, "")
        found = self._find(chosen)
        if found is None:
            return self._status(NOT_FOUND)
        return self._load(found, "")

    def create(self, state: Any, new_id: Any, name: Any) -> tuple[Any, ...]:
        self.gate.check(state)
        try:
            body = AssistantCreate.model_validate({"id": _str(new_id), "name": _str(name)})
            out = self.assistants.create(body)
        except ValidationError as exc:
            return self._status(readable(exc))
        except Exception as exc:
            return self._status(user_error(exc))
        return self._load(out, f"Created {out.id}.")

    def save(self, state: Any, current: Any, texts: Any, shown: Any, *form: Any) -> tuple[Any, ...]:
        """`form`: the FIELDS, then the shown language's greeting, suggestions and consent."""
        self.gate.check(state)
        if len(form) != len(FIELDS) + 3:
            return self._status("The form is incomplete; reload the page.")
        try:
            stored = self._get(current)
            merged = put_texts(texts, shown, form[len(FIELDS) :])
            collections = {
                *self._collection_names(),
                *([stored.collection] if stored.collection else []),
            }
            values = dict(zip(FIELDS, form[: len(FIELDS)], strict=True))
            saved = stored.model_dump(include=set(AssistantSettings.model_fields))
            models = allowed_models(self.settings)
            body = settings_from(values, merged, models, collections, saved)
            out = self.assistants.replace(stored.id, body)
        except Exception as exc:
            return self._status(user_error(exc))
        return self._load(out, f"Saved {out.id}.", language=str(shown))

    def ask_delete(self, state: Any, current: Any) -> tuple[Any, ...]:
        """Outputs: pending deletion, confirmation row, status."""
        self.gate.check(state)
        found = self._find(current)
        if found is None:
            return None, gr.update(visible=False), NO_ASSISTANT
        return found.id, gr.update(visible=True), f"Delete {found.id} and its keys for good?"

    def confirm_delete(self, state: Any, pending: Any, current: Any) -> tuple[Any, ...]:
        """Outputs: LOAD, pending deletion, confirmation row. Deletes only what was asked."""
        self.gate.check(state)
        hide = (None, gr.update(visible=False))
        if pending is None or pending != current:
            return (*self._status("Nothing to delete."), *hide)
        try:
            self.assistants.delete(self._get(pending).id)
        except Exception as exc:
            return (*self._status(user_error(exc)), *hide)
        return (*self._load(None, f"Deleted {pending}."), *hide)

    def cancel_delete(self, state: Any) -> tuple[Any, ...]:
        self.gate.check(state)
        return None, gr.update(visible=False), ""

    def switch_language(
        self,
        state: Any,
        texts: Any,
        shown: Any,
        greeting: Any,
        suggestions: Any,
        consent: Any,
        new: Any,
    ) -> tuple[Any, ...]:
        """Keep the shown language's boxes, show another's. Outputs: texts, shown, language,
        greeting, suggestions, consent, status."""
        self.gate.check(state)
        try:
            merged = put_texts(texts, shown, (greeting, suggestions, consent))
            lang = language(new)
        except FormError as exc:
            return (*[gr.skip()] * 6, plain(str(exc)))
        entry = merged.get(lang, {})
        return (
            merged,
            lang,
            gr.update(choices=sorted({*merged, lang}), value=lang),
            entry.get("greeting", ""),
            entry.get("suggestions", ""),
            entry.get("consent", ""),
            "",
        )

    def reload_preview(self, state: Any, current: Any) -> str:
        self.gate.check(state)
        found = self._find(current)
        return self._preview(found.id) if found else placeholder(NO_ASSISTANT)

    # ------------------------------------------------------------------ keys
    def create_key(self, state: Any, current: Any, origins: Any) -> tuple[Any, ...]:
        """Outputs: keys table, revoke choice, new key, origins box, status. The key is shown
        this once; the server keeps only its hash."""
        self.gate.check(state)
        skip = (gr.skip(),) * 4
        try:
            stored = self._get(current)
            lines = [o.strip() for o in _str(origins).splitlines() if o.strip()]
            body = KeyCreate.model_validate({"origins": lines})
            made = self.assistants.add_key(stored.id, body.origins)
            out = self.assistants.get(stored.id)
        except ValidationError as exc:
            return (*skip, plain(readable(exc)))
        except Exception as exc:
            return (*skip, plain(user_error(exc)))
        shown = gr.update(value=made.key, visible=True)
        return (
            *self._keys(out),
            shown,
            "",
            f"Created key {made.id}: copy it now, it is not shown again.",
        )

    def revoke_key(self, state: Any, current: Any, key_id: Any) -> tuple[Any, ...]:
        """Outputs: keys table, revoke choice, status."""
        self.gate.check(state)
        try:
            stored = self._get(current)
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                raise AssistantNotFound("Pick a key to revoke.")
            if key_id not in {k.id for k in stored.keys}:
                raise AssistantNotFound("No such key for this assistant.")
            self.assistants.delete_key(stored.id, key_id)
            out = self.assistants.get(stored.id)
        except Exception as exc:
            return gr.skip(), gr.skip(), plain(user_error(exc))
        return (*self._keys(out), f"Revoked key {key_id}.")

    # --------------------------------------------------------------- helpers
    def _get(self, assistant: Any) -> AssistantOut:
        """The stored assistant; ids that are no slug are not even looked up."""
        if not isinstance(assistant, str) or not _SLUG.match(assistant):
            raise AssistantNotFound(NO_ASSISTANT)
        try:
            return self.assistants.get(assistant)
        except AssistantNotFound:
            raise AssistantNotFound(NOT_FOUND) from None

    def _find(self, assistant: Any) -> AssistantOut | None:
        try:
            return self._get(assistant)
        except AssistantNotFound:
            return None

    def _collection_names(self) -> list[str]:
        try:
            return list(self._collections())
        except Exception:
            log.exception("could not list the knowledge bases")
            return []

    def _status(self, message: str) -> tuple[Any, ...]:
        return (*[gr.skip()] * (LOAD_SIZE - 1), plain(message))

    def _load(
        self, out: AssistantOut | None, message: str, language: str = "", locked: bool = False
    ) -> tuple[Any, ...]:
        """LOAD outputs for `out` (None: nothing picked, the editor hidden; `locked`: the list
        emptied too)."""
        everyone = [] if locked else self.assistants.all()
        picker = gr.update(
            choices=[(f"{a.name or a.id} ({a.id})", a.id) for a in everyone],
            value=out.id if out else None,
        )
        if out is None:
            hidden = gr.update(value="", visible=False)
            kept = [gr.skip()] * (LOAD_SIZE - 6)  # the hidden editor's values
            return (
                None,
                picker,
                gr.update(visible=False),
                *kept,
                hidden,
                placeholder(NO_ASSISTANT),
                plain(message),
            )
        values = dict(zip(FIELDS, form_values(out), strict=True))
        models = sorted(allowed_models(self.settings) | ({out.model} if out.model else set()))
        values["model"] = gr.update(
            choices=[(f"Default ({self.settings.llm.model})", ""), *models], value=out.model or ""
        )
        kbs = sorted({*self._collection_names(), *([out.collection] if out.collection else [])})
        values["collection"] = gr.update(
            choices=[(f"Default ({self.settings.collection})", ""), *kbs],
            value=out.collection or "",
        )
        texts = texts_of(out)
        shown = language if language in texts else out.default_language
        entry = texts.get(shown, {})
        return (
            out.id,
            picker,
            gr.update(visible=True),
            *[values[f] for f in FIELDS],
            texts,
            shown,
            gr.update(choices=sorted({*texts, shown}), value=shown),
            entry.get("greeting", ""),
            entry.get("suggestions", ""),
            entry.get("consent", ""),
            *self._keys(out),
            gr.update(value="", visible=False),
            self._preview(out.id),
            plain(message),
        )

    def _keys(self, out: AssistantOut) -> tuple[Any, Any]:
        rows = [
            [k.id, " ".join(k.origins) or "(this server)", f"{k.created:%Y-%m-%d %H:%M}"]
            for k in out.keys
        ]
        return (
            gr.update(value=rows or [["", "", ""]]),
            gr.update(choices=[k.id for k in out.keys], value=None),
        )

    def _preview(self, assistant: str) -> str:
        key = self.settings.admin_api_key
        secret = key.get_secret_value() if key is not None else ""
        if not secret:
            return placeholder("The preview needs KBCHAT_ADMIN_API_KEY.")
        token = preview_token.mint(secret, assistant)
        src = f"a/{assistant}?preview={token}&v={next(self._reloads)}"
        return (
            f'<iframe id="kbchat-console-preview-frame" src="{html.escape(src)}" '
            'title="Widget preview" referrerpolicy="same-origin" sandbox="allow-scripts" '
            'style="width:100%;height:640px;border:1px solid var(--border-color-primary);'
            'border-radius:8px;background:transparent"></iframe>'
        )


def placeholder(text: str) -> str:
    return f'<p class="kbchat-console-preview-empty">{html.escape(text)}</p>'


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError("Text expected.")
    return value
