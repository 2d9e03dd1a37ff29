"""The console's Learn page: top questions, content gaps, source usage and quality over time.
`learn_page(handlers, gate)` lays it out inside the shell's "Learn" tab (app.server.ui_console);
what the handlers check and read is in app.server.console_learn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from app.server.console_learn import CUSTOM, OUTPUTS, LearnConsole
from app.server.console_learn_tables import (
    CHARTS,
    CITED_HEADERS,
    EXAMPLE_HEADERS,
    GAP_HEADERS,
    NEVER_HEADERS,
    NO_QUESTIONS,
    SHARES,
    TOP_HEADERS,
)

if TYPE_CHECKING:
    from app.server.ui_console import ConsoleHandlers, Gate

# counts of one day draw as lines over the period (zeros included), answered vs not as stacked
# bars; rates, undefined on days without answers or ratings, as points
PLOTS: dict[str, Any] = {"answered": gr.BarPlot}
POLL_S = 5.0  # while questions wait to be clustered, the page reads again this often


def learn_page(handlers: ConsoleHandlers, gate: Gate) -> None:
    """Lay out the page inside the shell's open tab; every event takes `gate.state` first. The
    page reads its reports when the console unlocks and on Refresh."""
    if handlers.parts.insights is None:
        gr.Markdown("This app was built without the learn service.")
        return
    learn = LearnConsole(handlers, handlers.parts.insights, gate)
    with gr.Row(equal_height=True):
        assistant = gr.Dropdown(label="Assistant", choices=[], elem_id="kbchat-learn-assistant")
        collection = gr.Dropdown(
            label="Knowledge base", choices=[], elem_id="kbchat-learn-collection"
        )
        language = gr.Textbox(
            label="Questions in (blank: all)",
            placeholder="de",
            max_length=8,
            elem_id="kbchat-learn-language",
        )
        operator = gr.Textbox(
            label="Your language (representatives)",
            max_length=8,
            elem_id="kbchat-learn-operator",
        )
    with gr.Row(equal_height=True):
        period = gr.Radio(
            [
                ("Last 7 days", "7"),
                ("Last 30 days", "30"),
                ("Last 90 days", "90"),
                ("From–to", CUSTOM),
            ],
            value="30",
            label="Period",
            elem_id="kbchat-learn-period",
        )
        since = gr.Textbox(label="From (YYYY-MM-DD)", max_length=10, elem_id="kbchat-learn-since")
        until = gr.Textbox(label="To (YYYY-MM-DD)", max_length=10, elem_id="kbchat-learn-until")
        refresh = gr.Button("Refresh", variant="primary", elem_id="kbchat-learn-refresh")
    status = gr.Markdown("", elem_id="kbchat-learn-status")

    gr.Markdown("### Top questions")
    top = _table(TOP_HEADERS, "kbchat-learn-top", widths=["4%", "56%", "10%", "18%", "12%"])
    with gr.Accordion("Examples per cluster", open=False, elem_id="kbchat-learn-top-more"):
        top_examples = _table(EXAMPLE_HEADERS, "kbchat-learn-top-examples")
    gr.Markdown("### Content gaps: found nothing, thumbs-down or handed over")
    gaps = _table(GAP_HEADERS, "kbchat-learn-gaps", widths=["4%", "28%", "9%", "11%", "14%", "34%"])
    with gr.Accordion("Examples per gap", open=False, elem_id="kbchat-learn-gaps-more"):
        gap_examples = _table(EXAMPLE_HEADERS, "kbchat-learn-gap-examples")
    gr.Markdown("### Source usage")
    with gr.Row():
        cited = _table(CITED_HEADERS, "kbchat-learn-cited", "Most cited")
        never = _table(NEVER_HEADERS, "kbchat-learn-never", "Never cited")

    gr.Markdown("### Quality over time")
    with gr.Row(equal_height=True):
        bucket = gr.Radio(
            [("Per day", "day"), ("Per week", "week")],
            value="day",
            label="Periods",
            elem_id="kbchat-learn-bucket",
        )
        split = gr.Radio(
            [("Per language", "language"), ("Per assistant", "assistant")],
            value="language",
            label="Lines",
            elem_id="kbchat-learn-split",
        )
    no_charts = gr.Markdown(NO_QUESTIONS, elem_id="kbchat-learn-no-charts")
    with gr.Column(visible=False, elem_id="kbchat-learn-charts") as chart_column:
        plots = []
        for i in range(0, len(CHARTS), 2):
            with gr.Row():
                for key, title in CHARTS[i : i + 2]:
                    share = key in SHARES
                    plot = PLOTS.get(key, gr.ScatterPlot if share else gr.LinePlot)
                    shares: dict[str, Any] = {"y_axis_format": ".0%", "y_lim": [0, 1]}
                    counts: dict[str, Any] = {"y_axis_format": "~s"}
                    plots.append(
                        plot(
                            x="day",
                            y="value",
                            color="group",
                            title=title,
                            x_title="Day",
                            y_title="Share" if share else "Count",
                            color_title="",
                            **(shares if share else counts),
                            height=240,
                            elem_id=f"kbchat-learn-{key.replace('_', '-')}",
                        )
                    )
    timer = gr.Timer(POLL_S, active=False)

    filters = [assistant, collection, language, period, since, until, operator, bucket, split]
    inputs = [gate.state, *filters]
    outputs = [
        status,
        top,
        top_examples,
        gaps,
        gap_examples,
        cited,
        never,
        no_charts,
        chart_column,
        *plots,
        timer,
    ]
    private: dict[str, Any] = {"api_visibility": "private"}
    gate.state.change(
        learn.options, [gate.state], [assistant, collection, operator], **private
    ).success(learn.start, inputs, status, **private).success(
        learn.report, inputs, outputs, **private
    )
    refresh.click(learn.start, inputs, status, **private).success(
        learn.report, inputs, outputs, **private
    )
    assert len(outputs) == OUTPUTS
    timer.tick(learn.poll, inputs, outputs, **private)


def _table(
    headers: list[str],
    elem_id: str,
    label: str | None = None,
    widths: list[str | int] | None = None,
) -> gr.Dataframe:
    """A read-only table of plain-text cells (datatype "str": no Markdown, no HTML)."""
    return gr.Dataframe(
        headers=headers,
        datatype="str",
        interactive=False,
        label=label,
        show_label=label is not None,
        elem_id=elem_id,
        wrap=True,
        column_widths=widths,
    )
