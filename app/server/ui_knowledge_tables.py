"""What the console's Knowledge page shows, as plain text: a knowledge base's documents and an
ingest report as table rows, and the report's totals as one markdown line.

Sources and reasons come from documents and their file names, so they are only ever cell text
(the tables' columns are of type "str", never markdown or HTML), cut to a readable length. The
markdown line holds numbers and a validated knowledge-base name only."""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.server.knowledge import DocumentList
    from ingestion.sync import SyncReport

DOCUMENT_HEADERS = ["Source", "Status", "Reason", "Chunks", "Language", "Size", "Updated"]
REPORT_HEADERS = ["File", "Outcome", "Reason"]
MAX_CELL = 300  # characters of a source or reason shown in a cell
MAX_ROWS = 2000  # documents shown (and offered for deletion) at once
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cell(text: object) -> str:
    """One line of plain text, at most MAX_CELL characters."""
    flat = _CONTROL.sub(" ", str(text))
    return flat if len(flat) <= MAX_CELL else flat[: MAX_CELL - 1] + "…"


def plain(text: object) -> str:
    """`text` for a Markdown component, shown literally (no markup, no HTML, no links)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(cell(text), quote=False))


def human_size(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def document_rows(documents: DocumentList) -> list[list[str]]:
    return [
        [
            cell(d.source),
            d.status,
            cell(d.reason),
            str(d.chunks),
            cell(d.language or "—"),
            human_size(d.size),
            when(d.updated),
        ]
        for d in documents.documents[:MAX_ROWS]
    ]


def report_rows(report: SyncReport) -> list[list[str]]:
    """One row per file the sync touched, problems first: what an operator acts on."""
    rows = [[cell(p.source), "failed", cell(p.reason)] for p in report.failed]
    rows += [[cell(p.source), "skipped", cell(p.reason)] for p in report.skipped]
    rows += [[cell(p.source), "indexed, cut short", cell(p.reason)] for p in report.truncated]
    rows += [[cell(p.source), "indexed, check", cell(p.reason)] for p in report.notes]
    rows += [[cell(s), "added", ""] for s in report.added]
    rows += [[cell(s), "updated", ""] for s in report.updated]
    rows += [[cell(s), "removed", ""] for s in report.removed]
    return rows[:MAX_ROWS]


def report_summary(report: SyncReport) -> str:
    """The totals of a sync, one markdown line (numbers and a validated name only)."""
    return (
        f"**{plain(report.collection)}**: {len(report.added)} added, "
        f"{len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.failed)} failed, {len(report.skipped)} skipped, "
        f"{report.unchanged} unchanged; {report.chunks_written} chunks written, "
        f"{report.chunks_removed} removed in {report.seconds:.1f} s."
    )
