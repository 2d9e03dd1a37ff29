"""Prompt files, loaded and validated at start so a broken prompt fails loudly, not mid-chat."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

_REQUIRED = {
    "system.txt": {"language_name"},
    "answer.txt": {"context", "question", "language_name"},
    "condense.txt": {"history", "question"},
    "condense_translate.txt": {"history", "question", "languages"},
    "client_instructions.txt": {"instructions"},
    "persona.txt": {"instructions"},
}
MESSAGE_KEYS = {
    "name_en",
    "name",
    "no_llm",
    "no_answer",
    "llm_error",
    "llm_error_no_sources",
    "sources",
    "small_talk_hello",  # reply to a greeting, "how are you", "who are you"
    "small_talk_bye",  # reply to thanks and goodbyes
}


_ALIASES = {"no": "nb", "nn": "nb"}  # language detectors say "no"; the texts are Bokmål


class PromptError(ValueError):
    """A prompt file is missing or has the wrong placeholders."""


@dataclass(frozen=True)
class PromptSet:
    system: str
    answer: str
    condense: str
    messages: dict[str, dict[str, str]]  # language code -> key -> text
    condense_translate: str = ""  # condense plus translations (app/chat/translate.py)
    client_instructions: str = ""  # wraps an API client's system messages, below `system`
    persona: str = ""  # wraps an assistant's persona instructions, below `system`

    @property
    def languages(self) -> frozenset[str]:
        """The languages kbchat has its own texts for: the ones question detection picks from."""
        return frozenset(self.messages)

    def message(self, language: str, key: str) -> str:
        return self._entry(language)[key]

    def _entry(self, language: str) -> dict[str, str]:
        code = _ALIASES.get(language, language)
        return self.messages.get(code, self.messages["en"])

    def language_name(self, language: str) -> str:
        """'German (Deutsch)' for the prompt; unknown codes get a neutral description."""
        entry = self.messages.get(_ALIASES.get(language, language))
        if entry is None:
            return "the language of the question"
        return (
            f"{entry['name_en']} ({entry['name']})"
            if entry["name"] != entry["name_en"]
            else (entry["name_en"])
        )


def _fields(template: str) -> set[str]:
    # name is None for plain text, "" for a positional "{}" (which must not slip through)
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _read(folder: Path, name: str) -> str:
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PromptError(f"missing prompt file {path}") from exc
    try:
        found = _fields(text)
    except ValueError as exc:
        raise PromptError(f"{path}: {exc} (write literal braces as {{{{ and }}}})") from exc
    wanted = _REQUIRED[name]
    if found != wanted:
        raise PromptError(
            f"{path}: placeholders {sorted(found)} but expected exactly {sorted(wanted)}"
        )
    return text.strip()


def load_prompts(folder: Path) -> PromptSet:
    messages_path = folder / "messages.json"
    try:
        messages = json.loads(messages_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PromptError(f"cannot read {messages_path}: {exc}") from exc
    if "en" not in messages:
        raise PromptError(f"{messages_path}: needs at least the 'en' entry")
    for code, entry in messages.items():
        if set(entry) != MESSAGE_KEYS:
            raise PromptError(f"{messages_path}: '{code}' must have exactly {sorted(MESSAGE_KEYS)}")
    return PromptSet(
        system=_read(folder, "system.txt"),
        answer=_read(folder, "answer.txt"),
        condense=_read(folder, "condense.txt"),
        messages=messages,
        condense_translate=_read(folder, "condense_translate.txt"),
        client_instructions=_read(folder, "client_instructions.txt"),
        persona=_read(folder, "persona.txt"),
    )
