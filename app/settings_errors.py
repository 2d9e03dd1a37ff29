"""Settings problems in the words a user typed: the KBCHAT_* variable, its value, what is expected.

Pydantic reports `retrieval.k` in a long traceback; the person who set KBCHAT_RETRIEVAL_K in a
`.env` needs one line that names it. A misspelt KBCHAT_* variable is otherwise silently ignored,
so it gets a warning with the closest real name.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from app.settings import Settings

PREFIX = "KBCHAT_"
# KBCHAT_* variables read by the scripts and tests, not by Settings.
OTHER_VARIABLES = frozenset({"KBCHAT_TORCH_SPEC", "KBCHAT_CHROMIUM", "KBCHAT_TEST_ARTIFACTS"})
_SHOWN_CHARS = 80  # a value is quoted up to this length


def _group(field: str) -> type[BaseModel] | None:
    """The settings group (embedding, server, ...) a top-level field holds, if it is one."""
    annotation = Settings.model_fields[field].annotation
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def known_variables() -> frozenset[str]:
    """Every KBCHAT_* name Settings reads, groups as a whole (JSON) included."""
    names = set(OTHER_VARIABLES)
    for field, info in Settings.model_fields.items():
        if info.validation_alias is not None:  # OPENAI_API_KEY and the like: not ours to police
            continue
        names.add(PREFIX + field.upper())
        group = _group(field)
        if group is not None:
            names.update(  # a group's field is read by its alias where it has one (SMTP_FROM)
                f"{PREFIX}{field.upper()}_{(sub_info.alias or sub).upper()}"
                for sub, sub_info in group.model_fields.items()
            )
    return frozenset(names)


def dotenv_values() -> dict[str, str]:
    """The `.env` file Settings reads (relative to the working directory), as written."""
    from dotenv import dotenv_values as read

    path = Path(str(Settings.model_config.get("env_file") or ".env"))
    if not path.is_file():
        return {}
    encoding = Settings.model_config.get("env_file_encoding") or "utf-8"
    return {k: v for k, v in read(path, encoding=encoding).items() if v is not None}


def unknown_variable_warnings(
    environ: Mapping[str, str] | None = None, dotenv: Mapping[str, str] | None = None
) -> list[str]:
    """One line per KBCHAT_* variable that no setting reads, with the likeliest intended name."""
    environ = os.environ if environ is None else environ
    dotenv = dotenv_values() if dotenv is None else dotenv
    known = known_variables()
    lines = []
    for where, names in (("environment", environ), (".env", dotenv)):
        for name in sorted(n for n in names if n.upper().startswith(PREFIX)):
            if name.upper() in known:
                continue
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{name} ({where}) is not a kbchat setting and is ignored{hint}")
    return lines


def _variable(loc: tuple[int | str, ...], given: set[str]) -> tuple[str, str]:
    """The variable an error location came from, and the path inside its value (may be "")."""
    if not loc or str(loc[0]) not in Settings.model_fields:
        return (str(loc[0]) if loc else "settings"), ""
    field, rest = str(loc[0]), list(loc[1:])
    name = PREFIX + field.upper()
    if _group(field) is not None and rest:
        single = f"{name}_{str(rest[0]).upper()}"
        if single in given or name not in given:  # else the whole group came as JSON
            name = single
            rest.pop(0)
    inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
    return name, inner


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _field_annotation(loc: tuple[int | str, ...]) -> str:
    """The annotation of the field an error location points at, groups followed (as text)."""
    model: type[BaseModel] | None = Settings
    annotation: object = None
    for part in loc:
        if model is None or str(part) not in model.model_fields:
            break
        annotation = model.model_fields[str(part)].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return str(annotation)


def _redacted(loc: tuple[int | str, ...], value: object) -> object:
    """A value as it may be printed: any URL without its password, a secret not at all."""
    if isinstance(value, str) and "://" in value:
        return re.sub(r"^([^:/]+://[^/@]*?:)[^/]*@", r"\1***@", value)
    return "***" if "SecretStr" in _field_annotation(loc) else value


def _source(name: str, environ: Mapping[str, str]) -> str:
    in_env = name.upper() in {n.upper() for n in environ}
    return "" if in_env or not name.startswith(PREFIX) else " (in .env)"


def _expected(message: str) -> str:
    message = message.removeprefix("Value error, ")
    return re.sub(r"^Input should be ", "expected ", message)


def describe(exc: ValidationError | SettingsError, environ: Mapping[str, str] | None = None) -> str:
    """The problem as one line per bad variable (almost always exactly one line)."""
    environ = os.environ if environ is None else environ
    if isinstance(exc, SettingsError):
        return _describe_unparsable(exc, environ)
    given = {n.upper() for n in (*environ, *dotenv_values())}
    lines = []
    for error in exc.errors():
        name, inner = _variable(tuple(error["loc"]), given)
        lines.append(
            f"{name}{inner}={_shown(_redacted(tuple(error['loc']), error['input']))}"
            f"{_source(name, environ)}: "
            f"{_expected(error['msg'])}"
        )
    return "\n".join(dict.fromkeys(lines))


def _is_complex(annotation: object) -> bool:
    """Values pydantic-settings decodes as JSON: lists, dicts, models (also inside Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_complex(a) for a in typing.get_args(annotation))
    return origin in (list, dict, set, tuple)


def _candidates(field: str, environ: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    """The variables that feed one top-level field, from the environment and `.env`."""
    whole = PREFIX + field.upper()
    group = _group(field)
    sources = {**dotenv_values(), **environ}
    for name, value in sources.items():
        upper = name.upper()
        if upper == whole:
            yield name, value
        elif group is not None and upper.startswith(whole + "_"):
            sub = upper.removeprefix(whole + "_").lower()
            info = group.model_fields.get(sub)
            if info is not None and _is_complex(info.annotation):
                yield name, value


def _describe_unparsable(exc: SettingsError, environ: Mapping[str, str]) -> str:
    """pydantic-settings names only the field when a list or JSON value does not parse."""
    match = re.search(r'field "(\w+)"', str(exc))
    field = match.group(1) if match else ""
    if field not in Settings.model_fields:
        return f"invalid settings: {exc}"
    lines = []
    for name, value in _candidates(field, environ):
        try:
            json.loads(value)
        except json.JSONDecodeError as bad:
            lines.append(
                f"{name}={_shown(value)}{_source(name, environ)}: expected JSON ({bad.msg})"
            )
    return "\n".join(lines) or f"{PREFIX}{field.upper()}*: a value is not valid JSON"
