"""The conversation export as text, generated batch by batch for a streamed response: CSV with
one row per message, or JSON Lines with one conversation (summary and messages) per line.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return: OWASP's CSV injection) get a leading single quote, so a visitor's message cannot become
a formula on the operator's machine."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Literal

from app.server.conversation_admin import ExportBatch, MessageOut

ExportFormat = Literal["csv", "json"]
CSV_COLUMNS = (
    "session_id",
    "assistant",
    "collection",
    "message_id",
    "role",
    "language",
    "created",
    "content",
    "grounded",
    "feedback",
    "sources",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson"}


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text, never evaluates."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def file_name(fmt: ExportFormat, now: datetime | None = None) -> str:
    """Made here from the time alone: nothing a caller sends reaches the header."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"kbchat-conversations-{stamp}.{'csv' if fmt == 'csv' else 'jsonl'}"


def csv_lines(batches: Iterable[ExportBatch]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for batch in batches:
        for conversation in batch.conversations:
            for m in batch.messages.get(conversation.session_id, []):
                row = (
                    conversation.session_id,
                    conversation.assistant or "",
                    conversation.collection,
                    str(m.id),
                    m.role,
                    m.language,
                    m.created.isoformat(),
                    m.content,
                    "" if m.grounded is None else str(m.grounded).lower(),
                    "; ".join(f.rating for f in m.feedback),
                    _sources(m),
                )
                writer.writerow([neutralise(cell) for cell in row])
        yield flush()


def json_lines(batches: Iterable[ExportBatch]) -> Iterator[str]:
    for batch in batches:
        lines = []
        for conversation in batch.conversations:
            record = conversation.model_dump(mode="json")
            record["messages"] = [
                m.model_dump(mode="json") for m in batch.messages.get(conversation.session_id, [])
            ]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        yield "".join(lines)


def _sources(m: MessageOut) -> str:
    return "; ".join(f"{s.source}#{s.number}" for s in m.sources)
