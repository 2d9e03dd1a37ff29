"""Request field types shared by the routes, so malformed input is a 422 that says what is wrong
instead of a 500 deep in the tokenizer, the database or the JSON encoder."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from app.settings import validate_collection_name

SQL_INT_MAX = 2**63 - 1  # SQLite and Postgres BIGINT: larger ids overflow the driver


def _clean_text(value: object) -> object:
    """Refuse NUL characters and lone surrogates (JSON allows "\\ud800"; UTF-8 does not)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return value


# BeforeValidator: runs before pydantic's own checks, which cannot handle lone surrogates.
Text = Annotated[str, BeforeValidator(_clean_text)]
SessionId = Annotated[
    str,
    BeforeValidator(_clean_text),
    Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A session id the server handed out."),
]
MessageId = Annotated[int, Field(ge=1, le=SQL_INT_MAX, description="An answer's message id.")]
CollectionName = Annotated[
    str, BeforeValidator(_clean_text), AfterValidator(validate_collection_name)
]
