"""The console's Learn page handlers as the page calls them, over the real app (real Chroma, the
app's own InsightsService with the deterministic topic encoder of tests/test_insights.py): a
locked page refused, forged filters refused with short messages, and the tables and chart data
built from a seeded database, per language and per assistant."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from app.server.assistant_schema import AssistantCreate
from app.server.console_learn import LearnConsole, LearnView, operator_language
from app.server.console_learn_tables import NO_QUESTIONS
from app.server.insights_reports import utc_today
from app.server.ui_console import CONSOLE_LOCKED, ConsoleHandlers, ConsoleParts, Gate
from tests.test_assistants import ADMIN, make_app
from tests.test_insights import TopicEncoder, answer

REQUEST = gr.Request(headers={"accept-language": "de-CH,de;q=0.9,en;q=0.5"}, client={"host": "h"})
# assistant, collection, language, period, since, until, operator language, bucket, split
ALL = ["", "", "", "30", "", "", "en", "day", "language"]


class Learn:
    """The Learn page's handlers on a real app, with an unlocked page's state."""

    def __init__(self, app: Any) -> None:
        insights = app.state.insights
        insights.encoder, insights.correction, insights.threshold = TopicEncoder(), None, 0.9
        insights.report_wait_s = 60  # long enough on a busy machine
        services = app.state.services
        self.store = services.conversations
        handlers = ConsoleHandlers(
            services, app.state.throttles, app.state.assistants, ConsoleParts(insights=insights)
        )
        self.gate = Gate(services)
        self.page = LearnConsole(handlers, insights, self.gate)
        self.handlers, self.app = handlers, app
        self.state = handlers.unlock(ADMIN, REQUEST)[0]
        app.state.assistants.create(AssistantCreate(id="pip", name="Pip"))

    def ask(
        self, question: str, language: str, *, assistant: str | None = None, **fields: Any
    ) -> tuple[str, int]:
        session = self.store.open_session(None, fields.pop("collection", "default"), assistant)
        result = answer(language=language, **fields)
        return session, self.store.add_exchange(session, question, result)

    def view(self, *filters: Any) -> LearnView:
        self.page.start(self.state, *(filters or ALL))
        return self.page.report_view(self.state, *(filters or ALL))


@pytest.fixture
def learn(tmp_path: Path) -> Iterator[Learn]:
    app = make_app(tmp_path)
    with TestClient(app):
        yield Learn(app)


def seed(learn: Learn) -> None:
    """A shipping cluster asked in three languages, one of them by the assistant Pip; a warranty
    gap that found nothing, in two languages; a refund answer with a thumbs-down."""
    learn.ask("shipping to Spain?", "en", sources=["monorail.md"], cites="[1]")
    learn.ask("shipping nach Spanien?", "de", sources=["monorail.md"], cites="[1]")
    learn.ask("shipping a España?", "es", sources=["monorail.md"], assistant="pip")
    learn.ask("warranty for <b>used</b> items?", "en", grounded=False)
    learn.ask("Garantie warranty Gebraucht?", "de", grounded=False)
    session, reply = learn.ask("refund after 40 days?", "en", sources=["monorail.md"])
    learn.store.add_feedback(session, reply, "down")


def test_a_locked_page_is_refused(learn: Learn) -> None:
    seed(learn)
    for state in (None, "0" * 64, learn.state + "x"):
        for event in (learn.page.start, learn.page.report):
            with pytest.raises(gr.Error, match=CONSOLE_LOCKED):
                event(state, *ALL)
        with pytest.raises(gr.Error, match=CONSOLE_LOCKED):
            learn.page.options(state, REQUEST)


@pytest.mark.parametrize(
    ("position", "forged", "message"),
    [
        (0, "someone-else", "Choose an assistant from the list."),
        (0, "x" * 500, "not one the server knows"),
        (0, ["pip"], "not one the server knows"),
        (1, "../etc", "Choose a knowledge base from the list."),
        (2, "<script>", "ISO 639 code"),
        (2, "zz", "ISO 639 code"),
        (3, "3650", "Choose a period from the list."),
        (4, "2020-13-45", "YYYY-MM-DD"),
        (5, "tomorrow", "YYYY-MM-DD"),
        (6, "'; drop table messages; --", "ISO 639 code"),
        (7, "hour", "per day or per week"),
        (8, "session", "by language or by assistant"),
    ],
)
def test_forged_filters_are_refused_with_a_short_message(
    learn: Learn, position: int, forged: Any, message: str
) -> None:
    filters = list(ALL)
    filters[position] = forged
    if position in (4, 5):
        filters[3] = "custom"
    for event in (learn.page.start, learn.page.report):
        with pytest.raises(gr.Error, match=message):
            event(learn.state, *filters)


def test_a_custom_period_is_bounded_like_the_admin_api(learn: Learn) -> None:
    today = utc_today()
    backwards = ["", "", "", "custom", str(today), str(today - timedelta(days=3)), "", "day", ""]
    with pytest.raises(gr.Error, match="must not be after"):
        learn.page.report(learn.state, *backwards[:8], "language")
    long = ["", "", "", "custom", str(today - timedelta(days=400)), str(today)]
    with pytest.raises(gr.Error, match="at most 366 days"):
        learn.page.report(learn.state, *long, "", "day", "language")


def test_options_list_the_servers_assistants_and_the_browsers_language(learn: Learn) -> None:
    assistants, collections, language = learn.page.options(learn.state, REQUEST)
    assert ("Pip (pip)", "pip") in assistants["choices"]
    assert ("default", "default") in collections["choices"]
    assert language == "de"
    assert operator_language("xx-YY, <b>, fr;q=0.5") == "fr"
    assert operator_language(None) == "en"


def test_tables_and_charts_from_a_seeded_database(learn: Learn) -> None:
    seed(learn)
    view = learn.view(*ALL[:6], "de", "day", "language")
    assert view.pending == 0
    shipping = view.top[0]
    assert shipping[1] == "shipping nach Spanien?"  # the representative in the operator's language
    assert shipping[2] == "3" and shipping[4] == "100%"
    assert set(shipping[3].split(", ")) == {"en 1", "de 1", "es 1"}
    assert {row[2] for row in view.top_examples if row[0] == "1"} == {
        "shipping to Spain?",
        "shipping nach Spanien?",
        "shipping a España?",
    }
    warranty = next(row for row in view.gaps if "warranty" in row[1].lower())
    assert warranty[4] == "2 found nothing"
    assert "[en] warranty for <b>used</b> items?" in warranty[5]  # text, shown as text
    refund = next(row for row in view.gaps if "refund" in row[1])
    assert refund[4] == "1 thumbs-down"
    assert not any("shipping" in row[1] for row in view.gaps)
    assert [row[:3] for row in view.cited] == [["default", "monorail.md", "2"]]
    assert ["shop", "returns.md", "0"] in view.never
    conversations = view.charts["conversations"]
    today = conversations[conversations["day"] == str(utc_today())]
    assert dict(zip(today["group"], today["value"], strict=True)) == {"de": 2, "en": 3, "es": 1}
    assert len(conversations) == 30 * 3  # every day of the period, zeros included: a line
    assert conversations["value"].sum() == 6
    answered = view.charts["answered"].set_index("group")["value"].to_dict()
    assert answered == {"answered": 4, "unanswered": 2}
    score = view.charts["score"].set_index("group")["value"].to_dict()
    assert score == {"en": 0.0}
    outputs = learn.page.report(learn.state, *ALL)
    assert outputs[7] == gr.update(visible=False) and outputs[8] == gr.update(visible=True)


def test_one_assistants_view_shows_only_its_questions(learn: Learn) -> None:
    seed(learn)
    view = learn.view("pip", "", "", "7", "", "", "en", "week", "assistant")
    assert [row[1] for row in view.top] == ["shipping a España?"]
    assert view.gaps == []
    assert set(view.charts["messages"]["group"]) == {"pip"}
    everyone = learn.view(*ALL[:8], "assistant")
    assert set(everyone.charts["conversations"]["group"]) == {"pip", "(none)"}


def test_an_empty_period_says_so_instead_of_empty_charts(learn: Learn) -> None:
    view = learn.view()
    assert view.top == [] and view.charts == {}
    assert NO_QUESTIONS.rstrip(".") in view.status
    outputs = view.outputs()
    assert outputs[7] == gr.update(visible=True) and outputs[8] == gr.update(visible=False)


class HeldEncoder(TopicEncoder):
    """The topic encoder, held until `release` is set: clustering that takes its time."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def encode(self, texts: list[str]) -> Any:
        self.release.wait(60)
        return super().encode(texts)


def test_the_page_says_clustering_instead_of_waiting_and_reads_again_later(learn: Learn) -> None:
    seed(learn)
    insights = learn.page.insights
    held = HeldEncoder()
    insights.encoder, insights.report_wait_s = held, 0.05
    try:
        assert learn.page.start(learn.state, *ALL) == "Clustering 6 new questions…"
        outputs = learn.page.report(learn.state, *ALL)
        assert "Clustering 6 new questions" in outputs[0]
        assert outputs[-1].active  # the timer reads again while questions wait
    finally:
        held.release.set()
    worker = insights._worker
    assert worker is not None
    worker.join(60)
    view = learn.view()
    assert view.pending == 0 and view.top[0][2] == "3"
    assert not view.outputs()[-1].active


def test_every_learn_event_is_private_and_gated(learn: Learn) -> None:
    """Through the built page: each Learn event is private and takes the gate's state first."""
    from app.server.ui import build_ui

    h = learn.handlers
    blocks = build_ui(h.services, h.throttles, h.assistants, h.parts)
    config = blocks.get_config_file()
    states = {c["id"] for c in config["components"] if c.get("type") == "state"}
    fns = [
        f for f in blocks.fns.values() if isinstance(getattr(f.fn, "__self__", None), LearnConsole)
    ]
    # unlock: options, start, report; Refresh: start, report; the timer: report
    assert len(fns) == 6
    for fn in fns:
        assert fn.api_visibility == "private", fn.name
        assert fn.inputs and fn.inputs[0]._id in states, fn.name


def test_the_timer_stops_with_a_message_when_the_page_locks_or_filters_go_wrong(
    learn: Learn,
) -> None:
    seed(learn)
    assert len(learn.page.poll(learn.state, *ALL)) == len(learn.page.report(learn.state, *ALL))
    wrong = [*ALL[:2], "<b>", *ALL[3:]]
    for state, filters, message in [
        ("0" * 64, ALL, CONSOLE_LOCKED),
        (learn.state, wrong, "ISO 639 code"),
    ]:
        outputs = learn.page.poll(state, *filters)
        assert message in outputs[0].replace("\\", "")
        assert all(o == gr.skip() for o in outputs[1:-1])  # the tables stay as they were
        assert not outputs[-1].active
