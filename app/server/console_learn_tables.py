"""The Learn page's tables and charts (app.server.console_learn): reports from
app.server.insights turned into rows of one-line plain-text cells, and quality rows into long
pandas tables (day, group, value) for Gradio's plots."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import gradio as gr
import pandas as pd

from app.server.insights_quality import QualityRow
from app.server.insights_reports import ClusterReport, Filters, SourceUsage
from app.server.ui_knowledge_tables import cell, plain

EXAMPLE_CHARS = 200  # an example longer than this is cut in the tables
NO_QUESTIONS = "No questions in this period."
NO_ASSISTANT = "(none)"
TOP_HEADERS = ["#", "Representative question", "Questions", "Languages", "Answer rate"]
GAP_HEADERS = ["#", "Representative question", "Questions", "Languages", "Why a gap", "Examples"]
EXAMPLE_HEADERS = ["#", "Language", "Example question"]
CITED_HEADERS = ["Knowledge base", "Document", "Cited", "Shown", "Citations per language"]
NEVER_HEADERS = ["Knowledge base", "Document", "Shown (not cited)"]
# (chart key, its title) in the order the page lays the plots out
CHARTS = [
    ("conversations", "Conversations"),
    ("messages", "Messages"),
    ("answered", "Questions answered vs not"),
    ("feedback_rate", "Feedback rate (ratings per answer)"),
    ("score", "Feedback score (share of thumbs-up)"),
    ("handovers", "Handovers to a person"),
]
SHARES = ("feedback_rate", "score")  # charts of a share between 0 and 1


# ---------------------------------------------------------------- tables
def languages_cell(counts: dict[str, int]) -> str:
    return ", ".join(f"{cell(lang or 'unknown')} {n}" for lang, n in counts.items())


def why_gap(c: ClusterReport) -> str:
    reasons = [
        (c.unanswered, "found nothing"),
        (c.thumbs_down, "thumbs-down"),
        (c.handed_over, "handed over"),
    ]
    return ", ".join(f"{n} {what}" for n, what in reasons if n)


def _example(text: str) -> str:
    flat = " ".join(str(text).split())
    return cell(flat if len(flat) <= EXAMPLE_CHARS else flat[: EXAMPLE_CHARS - 1] + "…")


def cluster_rows(clusters: list[ClusterReport], *, gaps: bool) -> list[list[str]]:
    rows = []
    for n, c in enumerate(clusters, 1):
        row = [
            str(n),
            _example(c.representative.text),
            str(c.questions),
            languages_cell(c.languages),
        ]
        if gaps:
            shown = " | ".join(f"[{e.language}] {_example(e.text)}" for e in c.examples[:3])
            row += [why_gap(c), cell(shown)]
        else:
            row.append(f"{c.answer_rate:.0%}")
        rows.append(row)
    return rows


def example_rows(clusters: list[ClusterReport]) -> list[list[str]]:
    """Each cluster's examples, one a row, numbered as the cluster's table row."""
    return [
        [str(n), cell(e.language or "unknown"), _example(e.text)]
        for n, c in enumerate(clusters, 1)
        for e in c.examples
    ]


def source_rows(usage: SourceUsage) -> tuple[list[list[str]], list[list[str]]]:
    cited = [
        [
            cell(d.collection),
            cell(d.source),
            str(d.cited),
            str(d.shown),
            languages_cell(d.languages),
        ]
        for d in usage.cited
    ]
    never = [[cell(d.collection), cell(d.source), str(d.shown)] for d in usage.never_cited]
    return cited, never


def summary(f: Filters, top: list[ClusterReport], pending: int) -> str:
    period = f"{f.since} to {f.until}"
    if pending:
        head = f"Clustering {pending} new questions… the tables show those clustered so far"
        return plain(f"{head} ({period}); they read again by themselves.")
    if not top:
        return plain(f"{NO_QUESTIONS} ({period})")
    asked = sum(c.questions for c in top)
    return plain(f"{period}: {asked} questions in the {len(top)} largest clusters.")


def table_value(rows: list[list[str]], headers: list[str]) -> Any:
    return pd.DataFrame(rows, columns=headers)


# ---------------------------------------------------------------- charts
def chart_value(frame: pd.DataFrame | None, share: bool) -> Any:
    """A plot's value; a plot with nothing to draw (no ratings yet) is hidden, not garbled, and
    one of zeros only gets a 0-1 axis (an axis from 0 to 0 is labelled NaN)."""
    if frame is None or frame.empty:
        return gr.update(value=_empty_chart(), visible=False)
    flat = share or not (frame["value"] > 0).any()
    return gr.update(value=frame, visible=True, y_lim=[0, 1] if flat else [0, None])


def _empty_chart() -> pd.DataFrame:
    return pd.DataFrame({"day": pd.Series([], dtype="datetime64[ns]"), "group": [], "value": []})


def periods(f: Filters, bucket: str) -> list[date]:
    """Every day (or Monday of a week) of the period, so counts draw a line with its zeros."""
    assert f.since is not None and f.until is not None
    step = 7 if bucket == "week" else 1
    first = f.since - timedelta(days=f.since.weekday()) if bucket == "week" else f.since
    return [first + timedelta(days=n) for n in range(0, (f.until - first).days + 1, step)]


def _filled(sums: pd.DataFrame, key: str, days: list[date]) -> pd.DataFrame:
    """`key` per (day, group) with a zero for each period a group had none."""
    index = pd.MultiIndex.from_product(
        [pd.to_datetime(days), sorted(sums["group"].unique())], names=["day", "group"]
    )
    series = sums.set_index(["day", "group"])[key].reindex(index, fill_value=0)
    return series.rename("value").reset_index()


def charts(rows: list[QualityRow], split: str, days: list[date]) -> dict[str, pd.DataFrame]:
    """Per chart, a long table (day, group, value); none when no question was asked. Counts
    have a row for every period (zeros included); rates only where they are defined."""
    if not rows or not any(r.questions for r in rows):
        return {}
    frame = pd.DataFrame([r.model_dump() for r in rows])
    frame["day"] = pd.to_datetime(frame["period"])
    if split == "assistant":
        frame["group"] = frame["assistant"].fillna(NO_ASSISTANT).map(cell)
    else:
        frame["group"] = frame["language"].replace("", "unknown").map(cell)
    frame["up"] = frame["score"].fillna(0) * frame["feedback"]
    frame["answers"] = frame["answered"] + frame["unanswered"]
    sums = frame.groupby(["day", "group"], as_index=False)[
        ["conversations", "messages", "feedback", "up", "answers", "handovers"]
    ].sum()
    out = {key: _filled(sums, key, days) for key in ("conversations", "messages", "handovers")}
    rated = sums[sums["answers"] > 0]
    out["feedback_rate"] = rated.assign(value=rated["feedback"] / rated["answers"])[
        ["day", "group", "value"]
    ]
    scored = sums[sums["feedback"] > 0]
    out["score"] = scored.assign(value=scored["up"] / scored["feedback"])[["day", "group", "value"]]
    answered = frame.groupby("day", as_index=False)[["answered", "unanswered"]].sum()
    kinds = answered.melt(
        id_vars="day", value_vars=["answered", "unanswered"], var_name="group", value_name="value"
    )
    out["answered"] = _filled(kinds, "value", days)
    return out
