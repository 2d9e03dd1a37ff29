"""Prompt files: validated at load time, so a broken prompt fails loudly and names its file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from app.chat.prompts import MESSAGE_KEYS, PromptError, PromptSet, load_prompts

REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "prompts"


@pytest.fixture(scope="module")
def prompts() -> PromptSet:
    return load_prompts(PROMPTS)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A private, editable copy of the repository's prompt folder."""
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS, copy)
    return copy


def test_repo_prompts_load(prompts: PromptSet) -> None:
    assert "{language_name}" in prompts.system
    assert all(p in prompts.answer for p in ("{context}", "{question}", "{language_name}"))
    assert "{history}" in prompts.condense and "{question}" in prompts.condense
    assert prompts.system == prompts.system.strip()
    assert "en" in prompts.messages


def test_every_language_has_every_key(prompts: PromptSet) -> None:
    raw = json.loads((PROMPTS / "messages.json").read_text(encoding="utf-8"))
    assert len(raw) >= 10
    for code, entry in raw.items():
        assert set(entry) == MESSAGE_KEYS, code
        assert all(isinstance(v, str) and v.strip() for v in entry.values()), code
    assert prompts.messages == raw


def test_copy_loads_unchanged(folder: Path) -> None:
    assert load_prompts(folder) == load_prompts(PROMPTS)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_missing_placeholder(folder: Path) -> None:
    _edit(folder / "answer.txt", "{question}", "the question")
    with pytest.raises(PromptError, match=r"answer\.txt") as info:
        load_prompts(folder)
    assert "question" in str(info.value)


def test_unknown_placeholder(folder: Path) -> None:
    _edit(folder / "system.txt", "{language_name}", "{language_name} {tone}")
    with pytest.raises(PromptError, match=r"system\.txt") as info:
        load_prompts(folder)
    assert "tone" in str(info.value)


@pytest.mark.parametrize("stray", ["{", "}", "use {braces like this"])
def test_stray_brace(folder: Path, stray: str) -> None:
    path = folder / "condense.txt"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{stray}\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"condense\.txt"):
        load_prompts(folder)


@pytest.mark.parametrize("positional", ["{}", "{0}"])
def test_positional_placeholder(folder: Path, positional: str) -> None:
    path = folder / "answer.txt"
    path.write_text(path.read_text(encoding="utf-8") + f"\nExample: {positional}\n", "utf-8")
    with pytest.raises(PromptError, match=r"answer\.txt: placeholders"):
        load_prompts(folder)


def test_escaped_braces_are_fine(folder: Path) -> None:
    path = folder / "system.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\nJSON looks like {{}}.\n", "utf-8")
    assert "{{}}" in load_prompts(folder).system


def test_persona_wraps_the_instructions_below_the_rules(folder: Path) -> None:
    persona = load_prompts(folder).persona
    assert persona.index("the rules above") < persona.index("{instructions}")
    _edit(folder / "persona.txt", "{instructions}", "{persona}")
    with pytest.raises(PromptError, match=r"persona\.txt") as info:
        load_prompts(folder)
    assert "instructions" in str(info.value)


@pytest.mark.parametrize("name", ["system.txt", "answer.txt", "condense.txt", "persona.txt"])
def test_missing_file(folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(PromptError, match="missing prompt file .*" + re.escape(name)):
        load_prompts(folder)


def test_messages_without_english(folder: Path) -> None:
    path = folder / "messages.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["en"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PromptError, match=r"messages\.json.*'en'"):
        load_prompts(folder)


def test_messages_entry_missing_a_key(folder: Path) -> None:
    path = folder / "messages.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["fr"]["no_answer"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PromptError, match=r"messages\.json: 'fr'"):
        load_prompts(folder)


@pytest.mark.parametrize("content", ["{not json", None])
def test_messages_unreadable(folder: Path, content: str | None) -> None:
    path = folder / "messages.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptError, match=r"cannot read .*messages\.json"):
        load_prompts(folder)


def test_language_name(prompts: PromptSet) -> None:
    assert prompts.language_name("de") == "German (Deutsch)"
    assert prompts.language_name("es") == "Spanish (Español)"
    assert prompts.language_name("en") == "English"
    assert prompts.language_name("xx") == "the language of the question"
    assert prompts.language_name("und") == "the language of the question"
    assert prompts.language_name("no") == prompts.language_name("nb")
    assert prompts.language_name("nb") != "the language of the question"


def test_message_aliases_and_fallback(prompts: PromptSet) -> None:
    nb = prompts.messages["nb"]["no_answer"]
    assert nb != prompts.messages["en"]["no_answer"]
    assert prompts.message("no", "no_answer") == nb
    assert prompts.message("nn", "no_answer") == nb
    assert prompts.message("de", "no_llm") == prompts.messages["de"]["no_llm"]
    assert prompts.message("xx", "no_answer") == prompts.messages["en"]["no_answer"]
    assert prompts.message("und", "llm_error") == prompts.messages["en"]["llm_error"]
    with pytest.raises(KeyError):
        prompts.message("de", "no_such_key")
