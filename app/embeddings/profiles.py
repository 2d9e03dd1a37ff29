"""How an E5 model wants its inputs prefixed: the one thing that makes or breaks its retrieval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Scheme = Literal["e5", "instruct", "none"]


@dataclass(frozen=True)
class PrefixProfile:
    """Query and passage forms of one model; `task` is only used by instruct models."""

    scheme: Scheme
    task: str = ""

    def query(self, text: str) -> str:
        if self.scheme == "e5":
            return f"query: {text}"
        if self.scheme == "instruct":
            return f"Instruct: {self.task}\nQuery: {text}"
        return text

    def passage(self, text: str) -> str:
        return f"passage: {text}" if self.scheme == "e5" else text

    @property
    def passage_prefix(self) -> str:
        return self.passage("")

    def describe(self) -> str:
        if self.scheme == "e5":
            return "e5: 'query: ' / 'passage: '"
        if self.scheme == "instruct":
            return "instruct: 'Instruct: {task}\\nQuery: ' / no passage prefix"
        return "none: no prefixes"


def detect_scheme(model: str) -> Scheme:
    """Pick the prefix scheme from the model's name (hub id or folder name)."""
    name = Path(model.rstrip("/")).name.lower()
    if "e5" not in name:
        return "none"
    return "instruct" if "instruct" in name else "e5"


def load_task(prompts_dir: Path, name: str = "retrieval") -> str:
    """Read a task instruction from `prompts/e5_task_<name>.txt`; it must be one non-empty line."""
    path = prompts_dir / f"e5_task_{name}.txt"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"missing E5 task instruction file: {path}") from exc
    if not text or "\n" in text or "{" in text:
        raise ValueError(f"{path}: a task instruction is one non-empty line without placeholders")
    return text


def make_profile(model: str, prompts_dir: Path, scheme: str = "auto") -> PrefixProfile:
    chosen: Scheme = detect_scheme(model) if scheme == "auto" else scheme  # type: ignore[assignment]
    task = load_task(prompts_dir) if chosen == "instruct" else ""
    return PrefixProfile(chosen, task)
