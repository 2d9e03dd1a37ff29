"""The console's assistant form, without Gradio: AssistantSettings to form values and back, and
pydantic's errors as messages an operator can read.

Every value comes from the browser and is hostile until checked here: a text must be a string,
a count an integer, the model one the server allows, the knowledge base one the server has, and
the whole then passes the same AssistantSettings model as the admin API (nothing checked twice
differently, nothing saved on error)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from app.server.assistant_schema import LANGUAGE_PATTERN, MAX_LANGUAGES, AssistantSettings
from app.server.console_handoff_form import (
    HANDOFF_FIELDS,
    HANDOFF_LABELS,
    HandoffFormError,
    handoff_body,
    handoff_values,
)

# The form's fields, in the order of the page's components and of `form_values`.
FIELDS = (
    "name",
    "avatar",
    "color",
    "position",
    "theme",
    "default_language",
    "instructions",
    "model",
    "collection",
    "session_messages",
    "daily_messages",
    "lead_mode",
    "lead_after",
    "webhook_url",
    "fullpage",
    *HANDOFF_FIELDS,
)
# Per-language texts: greeting, suggested questions (one per line), lead consent.
TEXTS = ("greeting", "suggestions", "consent")
LABELS = {
    "id": "Id",
    "name": "Name",
    "avatar": "Avatar URL",
    "color": "Colour",
    "position": "Position",
    "theme": "Theme",
    "greeting": "Greeting",
    "suggestions": "Suggested questions",
    "default_language": "Default language",
    "instructions": "Persona and tone",
    "collection": "Knowledge base",
    "model": "Model",
    "caps": "Caps",
    "session_messages": "messages per conversation",
    "daily_messages": "messages per day",
    "fullpage": "Full page",
    "leads": "Lead capture",
    "mode": "mode",
    "after_messages": "after N answers",
    "consent": "consent text",
    "webhook_url": "webhook URL",
    "origins": "Origins",
    **HANDOFF_LABELS,
}
MAX_ERRORS = 8
_LANGUAGE = re.compile(LANGUAGE_PATTERN)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~<>&-])")

Texts = dict[str, dict[str, str]]


class FormError(ValueError):
    """A form value the server refuses; the message is for the operator."""


def plain(text: str) -> str:
    """Text shown in a Markdown component as itself: no markup, no HTML; lines kept."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def readable(exc: ValidationError) -> str:
    """pydantic's errors as short lines naming the form's fields (no input values, no types)."""
    lines = []
    for error in exc.errors()[:MAX_ERRORS]:
        where = [LABELS.get(str(p), str(p)) for p in error["loc"] if p != "[key]"]
        field = " › ".join(where[:3]) or "Settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{field}: {message}")
    return "\n".join(lines)


def form_values(settings: AssistantSettings) -> list[Any]:
    """The form's values for `settings`, in FIELDS order ("" for unset)."""
    values = {
        "name": settings.name,
        "avatar": settings.avatar or "",
        "color": settings.color,
        "position": settings.position,
        "theme": settings.theme,
        "default_language": settings.default_language,
        "instructions": settings.instructions,
        "model": settings.model or "",
        "collection": settings.collection or "",
        "session_messages": settings.caps.session_messages,
        "daily_messages": settings.caps.daily_messages,
        "lead_mode": settings.leads.mode,
        "lead_after": settings.leads.after_messages,
        "webhook_url": settings.leads.webhook_url or "",
        "fullpage": settings.fullpage,
        **handoff_values(settings.handoff),
    }
    return [values[f] for f in FIELDS]


def texts_of(settings: AssistantSettings) -> Texts:
    """Greeting, suggestions and consent text per language, as the text boxes show them."""
    languages = {*settings.greeting, *settings.suggestions, *settings.leads.consent}
    return {
        lang: {
            "greeting": settings.greeting.get(lang, ""),
            "suggestions": "\n".join(settings.suggestions.get(lang, [])),
            "consent": settings.leads.consent.get(lang, ""),
        }
        for lang in sorted(languages)
    }


def language(value: Any) -> str:
    if not isinstance(value, str) or not _LANGUAGE.match(value.strip()):
        raise FormError("A language is a code like en, es or pt-BR.")
    return value.strip()


def put_texts(texts: Any, lang: Any, boxes: Iterable[Any]) -> Texts:
    """`texts` with `lang`'s boxes (greeting, suggestions, consent) stored, or dropped when all
    are empty; a copy, checked: at most MAX_LANGUAGES languages, text values only."""
    clean: Texts = {}
    for key, entry in (texts or {}).items() if isinstance(texts, dict) else ():
        if isinstance(entry, dict):
            clean[language(key)] = {t: _text(entry.get(t), t) for t in TEXTS}
    values = {t: _text(v, t) for t, v in zip(TEXTS, boxes, strict=True)}
    code = language(lang)
    if any(v.strip() for v in values.values()):
        clean[code] = values
    else:
        clean.pop(code, None)
    if len(clean) > MAX_LANGUAGES:
        raise FormError(f"At most {MAX_LANGUAGES} languages.")
    return clean


def settings_from(
    values: dict[str, Any],
    texts: Texts,
    models: set[str],
    collections: set[str],
    stored: dict[str, Any] | None = None,
) -> AssistantSettings:
    """AssistantSettings from the form, or FormError with a readable message. `models` and
    `collections` are the server's lists; the form may name nothing else. Settings of `stored`
    (the saved ones) that the form does not show are kept, so a field added to the schema
    later is not reset by a save from this page."""
    model = _text(values.get("model"), "model").strip()
    if model and model not in models:
        raise FormError(f"Model: choose one of the allowed models ({', '.join(sorted(models))}).")
    collection = _text(values.get("collection"), "collection").strip()
    if collection and collection not in collections:
        raise FormError("Knowledge base: choose one from the list.")
    fullpage = values.get("fullpage")
    if not isinstance(fullpage, bool):
        raise FormError("Full page: on or off.")
    body: dict[str, Any] = {
        "name": _text(values.get("name"), "name").strip(),
        "avatar": _text(values.get("avatar"), "avatar").strip() or None,
        "color": _text(values.get("color"), "color").strip(),
        "position": values.get("position"),
        "theme": values.get("theme"),
        "default_language": _text(values.get("default_language"), "default_language").strip(),
        "instructions": _text(values.get("instructions"), "instructions").strip(),
        "model": model or None,
        "collection": collection or None,
        "fullpage": fullpage,
        "greeting": {k: v["greeting"].strip() for k, v in texts.items() if v["greeting"].strip()},
        "suggestions": {k: lines for k, v in texts.items() if (lines := _lines(v["suggestions"]))},
        "caps": {
            "session_messages": _count(values.get("session_messages"), "session_messages"),
            "daily_messages": _count(values.get("daily_messages"), "daily_messages"),
        },
        "leads": {
            "mode": values.get("lead_mode"),
            "after_messages": _count(values.get("lead_after"), "after_messages") or 3,
            "consent": {k: v["consent"].strip() for k, v in texts.items() if v["consent"].strip()},
            "webhook_url": _text(values.get("webhook_url"), "webhook_url").strip() or None,
        },
    }
    base = stored or {}
    try:
        saved = base.get("handoff")
        body["handoff"] = handoff_body(values, saved if isinstance(saved, dict) else None)
    except HandoffFormError as exc:
        raise FormError(str(exc)) from exc
    body = {**base, **body}
    for group in ("caps", "leads"):  # the form's part of each group wins, the rest is kept
        if isinstance(base.get(group), dict):
            body[group] = {**base[group], **body[group]}
    try:
        return AssistantSettings.model_validate(body)
    except ValidationError as exc:
        raise FormError(readable(exc)) from exc


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"{LABELS.get(field, field)}: must be text.")
    return value


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _count(value: Any, field: str) -> int | None:
    """A whole number from a gr.Number; empty or 0: None (no cap)."""
    if value is None or value == "" or value == 0:
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise FormError(f"{LABELS.get(field, field)}: must be a whole number.")
    return int(value)
