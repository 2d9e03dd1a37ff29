"""The handlers of the console's Learn page (laid out by app.server.ui_console_learn): top
questions, content gaps, source usage and conversation quality over time, all read through
app.server.insights.InsightsService, the service behind /api/insights (no SQL here).

Every event checks the shell's gate first. The filters come from the browser and are checked as
the admin routes check theirs (app.server.routes_insights): the assistant and the knowledge base
must be ones the server lists now, languages real ISO 639 codes, dates real days, a period at
most MAX_DAYS long. Everything shown is plain text: table cells are one line of text (Gradio's
"str" cells are not rendered as Markdown or HTML), and messages go through `plain`.

Clustering new questions runs in the service's background thread: `start` only kicks it and
says how many wait, so the page says "clustering N new questions…" at once; `report` then reads
what is clustered so far and, while questions still wait, turns on a timer that reads again."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from app.server.console_learn_tables import (
    CHARTS,
    CITED_HEADERS,
    EXAMPLE_HEADERS,
    GAP_HEADERS,
    NEVER_HEADERS,
    SHARES,
    TOP_HEADERS,
    chart_value,
    charts,
    cluster_rows,
    example_rows,
    periods,
    source_rows,
    summary,
    table_value,
)
from app.server.insights_quality import Bucket
from app.server.insights_reports import Filters, utc_today
from app.server.routes_insights import MAX_DAYS, Language
from app.server.ui_assistant import preferred_languages
from app.server.ui_knowledge_tables import cell, plain

if TYPE_CHECKING:
    from app.server.insights import InsightsService
    from app.server.ui_console import ConsoleHandlers, Gate

log = logging.getLogger(__name__)

CLUSTERS = 20  # clusters per table
EXAMPLES = 5  # example questions per cluster
DOCUMENTS = 50  # rows per source table
PERIODS = {"7": 7, "30": 30, "90": 90}
CUSTOM = "custom"
SPLITS = ("language", "assistant")
BUCKETS = ("day", "week")
READ_FAILED = "The reports could not be read; the server log says why."
OUTPUTS = 10 + len(CHARTS)  # what `report` returns: see LearnView.outputs
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LANGUAGE = TypeAdapter(Language)


@dataclass(frozen=True)
class LearnQuery:
    """The page's filters once checked: the report filters and how to show them."""

    filters: Filters
    operator_language: str | None = None
    bucket: str = "day"
    split: str = "language"


@dataclass
class LearnView:
    """Everything one read of the page shows, in the order `outputs` gives it."""

    status: str
    top: list[list[str]] = field(default_factory=list)
    top_examples: list[list[str]] = field(default_factory=list)
    gaps: list[list[str]] = field(default_factory=list)
    gap_examples: list[list[str]] = field(default_factory=list)
    cited: list[list[str]] = field(default_factory=list)
    never: list[list[str]] = field(default_factory=list)
    charts: dict[str, pd.DataFrame] = field(default_factory=dict)
    pending: int = 0

    def outputs(self) -> tuple[Any, ...]:
        """status, top, top examples, gaps, gap examples, cited, never cited, charts note,
        charts column, each chart, timer."""
        has_charts = bool(self.charts)
        return (
            self.status,
            table_value(self.top, TOP_HEADERS),
            table_value(self.top_examples, EXAMPLE_HEADERS),
            table_value(self.gaps, GAP_HEADERS),
            table_value(self.gap_examples, EXAMPLE_HEADERS),
            table_value(self.cited, CITED_HEADERS),
            table_value(self.never, NEVER_HEADERS),
            gr.update(visible=not has_charts),
            gr.update(visible=has_charts),
            *(chart_value(self.charts.get(key), key in SHARES) for key, _ in CHARTS),
            gr.Timer(active=self.pending > 0),
        )


class LearnConsole:
    """The page's handlers; each takes the gate's state first."""

    def __init__(self, handlers: ConsoleHandlers, insights: InsightsService, gate: Gate) -> None:
        self.handlers, self.insights, self.gate = handlers, insights, gate

    # ------------------------------------------------------------ choices
    def assistant_ids(self) -> list[tuple[str, str]]:
        registry = self.handlers.assistants
        return [] if registry is None else [(a.name, a.id) for a in registry.all()]

    def collection_names(self) -> list[str]:
        return [str(c["name"]) for c in self.handlers.services.collections()]

    def options(self, state: Any, request: gr.Request | None = None) -> tuple[Any, ...]:
        """On unlock: the assistants and knowledge bases to filter by, and the operator's
        language from the browser's Accept-Language (else English)."""
        self.gate.check(state)
        assistants = [("All assistants", "")] + [
            (f"{cell(name)} ({slug})", slug) for name, slug in self.assistant_ids()
        ]
        kbs = [("All knowledge bases", "")] + [(n, n) for n in self.collection_names()]
        header = request.headers.get("accept-language") if request is not None else None
        return (
            gr.update(choices=assistants, value=""),
            gr.update(choices=kbs, value=""),
            operator_language(header),
        )

    # ------------------------------------------------------------ checks
    def query(
        self,
        assistant: Any,
        collection: Any,
        language: Any,
        period: Any,
        since: Any,
        until: Any,
        operator: Any,
        bucket: Any = "day",
        split: Any = "language",
    ) -> LearnQuery:
        """The filters as the browser sent them, checked; ValueError with a short message."""
        chosen = _text(assistant, "assistant", 64)
        if chosen and chosen not in {slug for _, slug in self.assistant_ids()}:
            raise ValueError("Choose an assistant from the list.")
        kb = _text(collection, "knowledge base", 128)
        if kb and kb not in self.collection_names():
            raise ValueError("Choose a knowledge base from the list.")
        if bucket not in BUCKETS:
            raise ValueError("Show the charts per day or per week.")
        if split not in SPLITS:
            raise ValueError("Split the charts by language or by assistant.")
        first, last = period_days(period, since, until)
        return LearnQuery(
            Filters(chosen or None, kb or None, language_code(language, "language"), first, last),
            language_code(operator, "your language"),
            str(bucket),
            str(split),
        )

    # ------------------------------------------------------------ events
    def start(self, state: Any, *filters: Any) -> str:
        """Check the filters, start clustering new questions in the background and say so."""
        self.gate.check(state)
        self._checked(*filters)
        waiting = self._call(lambda: self.insights.catch_up(0))
        return f"Clustering {waiting} new questions…" if waiting else "Reading the reports…"

    def report(self, state: Any, *filters: Any) -> tuple[Any, ...]:
        return self.report_view(state, *filters).outputs()

    def poll(self, state: Any, *filters: Any) -> tuple[Any, ...]:
        """The timer's read: like `report`, but a page locked (a rotated key) or filters made
        wrong since stop the timer with a message instead of an error every few seconds."""
        try:
            return self.report(state, *filters)
        except gr.Error as exc:
            kept = [gr.skip()] * (OUTPUTS - 2)
            return (plain(str(exc.message)), *kept, gr.Timer(active=False))

    def report_view(self, state: Any, *filters: Any) -> LearnView:
        """The four reports for the filters (clusters as far as clustered now)."""
        self.gate.check(state)
        q = self._checked(*filters)
        lang = q.operator_language
        top = self._call(
            lambda: self.insights.top_questions(
                q.filters, limit=CLUSTERS, examples=EXAMPLES, language=lang
            )
        )
        gaps = self._call(
            lambda: self.insights.content_gaps(
                q.filters, limit=CLUSTERS, examples=EXAMPLES, language=lang
            )
        )
        usage = self._call(lambda: self.insights.source_usage(q.filters, limit=DOCUMENTS))
        bucket: Bucket = "week" if q.bucket == "week" else "day"
        rows = self._call(lambda: self.insights.quality(q.filters, bucket))
        pending = self._call(self.insights.pending)
        view = LearnView(
            status=summary(q.filters, top, pending),
            top=cluster_rows(top, gaps=False),
            top_examples=example_rows(top),
            gaps=cluster_rows(gaps, gaps=True),
            gap_examples=example_rows(gaps),
            charts=charts(rows, q.split, periods(q.filters, q.bucket)),
            pending=pending,
        )
        view.cited, view.never = source_rows(usage)
        return view

    def _checked(self, *filters: Any) -> LearnQuery:
        try:
            return self.query(*filters)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def _call(self, work: Any) -> Any:
        try:
            return work()
        except Exception:  # a short message on the page; the log has the rest
            log.exception("the Learn page could not read the insights")
            raise gr.Error(READ_FAILED) from None


# ---------------------------------------------------------------- filters
def _text(value: Any, what: str, most: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > most:
        raise ValueError(f"That {what} is not one the server knows.")
    return value.strip()


def language_code(value: Any, what: str) -> str | None:
    """A language code as the questions store them, or None for blank."""
    wrong = f"Type {what} as an ISO 639 code such as 'de' or 'und', or leave it blank."
    try:
        text = _text(value, what, 8).lower()
        return str(_LANGUAGE.validate_python(text)) if text else None
    except (ValueError, ValidationError):
        raise ValueError(wrong) from None


def _day(value: Any, what: str) -> date | None:
    text = _text(value, what, 10)
    if not text:
        return None
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"Type the {what} day as YYYY-MM-DD.") from None


def period_days(period: Any, since: Any, until: Any) -> tuple[date, date]:
    """(first, last day) of the chosen period, as the admin routes bound it."""
    today = utc_today()
    if period in PERIODS:
        return today - timedelta(days=PERIODS[period] - 1), today
    if period != CUSTOM:
        raise ValueError("Choose a period from the list.")
    last = _day(until, "until") or today
    first = _day(since, "since") or last - timedelta(days=29)
    if first > last:
        raise ValueError("The period's first day must not be after its last.")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"A period is at most {MAX_DAYS} days.")
    return first, last


def operator_language(accept_language: str | None) -> str:
    """The base language of the browser's first Accept-Language that is a real code, else en."""
    for tag in preferred_languages(accept_language):
        try:
            return language_code(tag.split("-")[0], "language") or "en"
        except ValueError:
            continue
    return "en"
