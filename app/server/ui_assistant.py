"""The assistant picker of the Gradio chat: the dropdown's choices, the assistant behind a chosen
id (as an AssistantKey of its own, `ui:{id}`, so its caps count like one more key of it), and its
greeting and suggested questions in the browser's language.

The Gradio chat is the team's own surface, beside its admin tab: it never asks for a lead,
whatever the assistant's lead capture says (the widget and the full page do)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.server.assistant_schema import AssistantSettings
from app.server.assistants import AssistantKey, AssistantNotFound, Assistants

NONE_LABEL = "None (knowledge base only)"
UI_KEY_PREFIX = "ui:"  # the key_id of an assistant chosen in the Gradio chat (real ones: key_…)
MAX_ID = 64
_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
MAX_ACCEPT = 512  # an Accept-Language longer than this is cut
MAX_LANGUAGES = 20


def choices(assistants: Assistants) -> list[tuple[str, str]]:
    """(label, value) pairs: "None" first (value ""), then every assistant by id."""
    found = [(a.name or a.id, a.id) for a in assistants.all()]
    return [(NONE_LABEL, ""), *((f"{name} ({i})" if name != i else i, i) for name, i in found)]


def ui_key(assistants: Assistants, assistant: object) -> AssistantKey | None:
    """The assistant a browser chose; None for "None". Anything else that is not an existing
    assistant's id raises AssistantNotFound with a message that names nothing stored."""
    if assistant is None or assistant == "":
        return None
    if not isinstance(assistant, str) or len(assistant) > MAX_ID or not _ID.match(assistant):
        raise AssistantNotFound("That assistant does not exist; choose another one.")
    try:
        out = assistants.get(assistant)
    except AssistantNotFound:
        raise AssistantNotFound(
            "That assistant does not exist (any more); choose another one."
        ) from None
    config = AssistantSettings.model_validate(
        out.model_dump(include=set(AssistantSettings.model_fields))
    )
    return AssistantKey(out.id, UI_KEY_PREFIX + out.id, [], config)


def preferred_languages(accept_language: str | None) -> list[str]:
    """The languages of an Accept-Language header, best first (lower-case tags)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "")[:MAX_ACCEPT].split(",")[:MAX_LANGUAGES]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if q > 0:
            ranked.append((-q, i, tag.lower()))
    return [tag for _, _, tag in sorted(ranked)]


def pick_language(available: list[str], accept_language: str | None, default: str) -> str | None:
    """The key of `available` for the browser's languages (exact tag, then the same base
    language), else `default` when available, else None."""
    by_lower = {k.lower(): k for k in available}
    for tag in preferred_languages(accept_language):
        if tag in by_lower:
            return by_lower[tag]
        base = tag.split("-")[0]
        for lower, key in by_lower.items():
            if lower.split("-")[0] == base:
                return key
    return default if default in available else None


@dataclass(frozen=True)
class Welcome:
    """What the chat shows when an assistant is chosen."""

    name: str
    avatar: str | None
    greeting: str
    suggestions: list[str]
    collection: str | None


def welcome(key: AssistantKey, accept_language: str | None) -> Welcome:
    s = key.settings
    greeting_lang = pick_language(list(s.greeting), accept_language, s.default_language)
    chips_lang = pick_language(list(s.suggestions), accept_language, s.default_language)
    return Welcome(
        name=s.name or key.assistant,
        avatar=s.avatar,
        greeting=s.greeting.get(greeting_lang, "") if greeting_lang else "",
        suggestions=list(s.suggestions.get(chips_lang, [])) if chips_lang else [],
        collection=s.collection,
    )
