"""Insights with a deterministic topic encoder: incremental clustering in the database, content
gaps, source usage, quality over time, erasure, replicas refreshing at once, and the admin
routes (key, filter validation, no other assistant's questions)."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.chat.types import ChatResult, Source
from app.embeddings.e5 import EmbeddingSpec
from app.embeddings.profiles import PrefixProfile
from app.server.db import ConversationStore, QuestionClusterRow, QuestionRow
from app.server.insights import InsightsService, delete_for_sessions
from app.server.insights_reports import Filters
from app.server.question_clusters import ClusterIndex
from tests.services import create_database, require, start_postgres

TOPICS = ["password", "refund", "shipping", "opening hours", "warranty"]
DIM = 16


class TopicEncoder:
    """A question's vector is its topic's axis (the first topic word it contains) plus a small
    jitter from its text; a question with no topic word gets a direction of its own."""

    profile = PrefixProfile("e5")
    spec = EmbeddingSpec("test/topics", "test", "e5", DIM, 64)

    def __init__(self) -> None:
        self.embedded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        for row, raw in enumerate(texts):
            body = raw.removeprefix("query: ").lower()
            seed = int.from_bytes(hashlib.sha256(body.encode()).digest()[:4], "big")
            noise = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
            topic = next((i for i, t in enumerate(TOPICS) if t in body), None)
            if topic is None:
                out[row] = noise
            else:
                out[row, topic] = 1.0
                out[row] += 0.05 * noise
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def answer(
    grounded: bool = True, sources: list[str] | None = None, cites: str = "", language: str = "en"
) -> ChatResult:
    shown = [
        Source(n, name, name, language, 0.9, "text") for n, name in enumerate(sources or [], 1)
    ]
    body = f"An answer {cites}".strip()
    cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", cites)})  # as the chain records
    return ChatResult(
        body, shown if grounded else [], language, "generative", grounded, cited=cited
    )


def ask(
    store: ConversationStore, question: str, language: str = "en", **fields: Any
) -> tuple[str, int]:
    session = store.open_session(None, fields.pop("collection", "default"))
    result = answer(language=language, **fields)
    result.language = language  # type: ignore[misc]
    return session, store.add_exchange(session, question, result)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    require("postgres")
    with start_postgres() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ConversationStore:
    """The conversations database on each backend (the reports' SQL runs on both)."""
    if request.param == "sqlite":
        return ConversationStore(f"sqlite:///{tmp_path / 'conv.sqlite3'}")
    url = request.getfixturevalue("pg_server")
    return ConversationStore(create_database(url, f"i_{uuid.uuid4().hex[:12]}"))


def service(store: ConversationStore, **documents: list[str]) -> InsightsService:
    return InsightsService(
        store.engine,
        TopicEncoder(),
        None,
        threshold=0.9,
        report_wait_s=60,  # the reports' wait for clustering: long enough on a busy machine
        documents=lambda name: documents.get(name, []),
        collections=lambda: sorted(documents),
    )


def everything() -> Filters:
    return Filters(since=date.today() - timedelta(days=1), until=date.today() + timedelta(days=1))


def test_the_engine_joins_near_vectors_and_starts_clusters_for_far_ones() -> None:
    index = ClusterIndex(3, 0.9)
    first = index.assign(np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0]], np.float32))
    assert [a.new for a in first] == [True, False, True]
    assert first[0].cluster == first[1].cluster != first[2].cluster
    again = index.assign(np.array([[0.98, 0, 0.05], [0, 0, 1]], np.float32))
    assert again[0].cluster == first[0].cluster and not again[0].new
    assert again[1].new and len(index) == 3 and index.size(first[0].cluster) == 3
    stored = ClusterIndex.from_arrays(
        index.ids,
        np.stack([index.mean(int(c)) for c in index.ids]),
        np.array([index.size(int(c)) for c in index.ids]),
        0.9,
    )
    assert stored.assign(np.array([[0, 0.05, 1]], np.float32))[0].cluster == again[1].cluster


def test_refresh_is_incremental_and_new_questions_join_existing_clusters(
    store: ConversationStore,
) -> None:
    insights = service(store)
    ask(store, "I forgot my password")
    ask(store, "How do I get a refund?")
    assert insights.refresh() == 2
    assert insights.refresh() == 0  # nothing new: nothing embedded again
    encoder = insights.encoder
    assert isinstance(encoder, TopicEncoder) and encoder.embedded == 2
    ask(store, "password reset does not work")
    later = service(store)  # another process: loads the clusters from the database
    assert later.refresh() == 1
    with Session(store.engine) as db:
        clusters = {q.message_id: q.cluster_id for q in db.query(QuestionRow)}
        rows = {c.id: c for c in db.query(QuestionClusterRow)}
    assert len(clusters) == 3 and len(set(clusters.values())) == 2
    password = clusters[max(clusters)]
    assert rows[password].size == 2
    top = later.top_questions(everything())
    assert (top[0].questions, top[0].cluster) == (2, password)


def test_two_replicas_refreshing_at_once_cluster_each_question_once(
    store: ConversationStore,
) -> None:
    for n in range(30):
        ask(store, f"{TOPICS[n % 5]} question number {n}")
    replicas = [service(store) for _ in range(3)]
    added: list[int] = []
    threads = [threading.Thread(target=lambda r=r: added.append(r.refresh())) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(added) == [0, 0, 30]
    with Session(store.engine) as db:
        assert db.query(QuestionRow).count() == 30
        assert sum(c.size for c in db.query(QuestionClusterRow)) == 30


def test_content_gaps_list_an_ungrounded_and_a_thumbs_down_cluster(
    store: ConversationStore,
) -> None:
    ask(store, "What are your opening hours?", sources=["hours.md"], cites="[1]")
    for q, lang in [("warranty for used items?", "en"), ("Garantie warranty Gebraucht?", "de")]:
        ask(store, q, lang, grounded=False)
    session, answer_id = ask(store, "refund after 40 days?", sources=["refunds.md"], cites="[1]")
    store.add_feedback(session, answer_id, "down")
    gaps = service(store).content_gaps(everything())
    assert len(gaps) == 2  # the answered, well-rated cluster is no gap
    warranty = next(c for c in gaps if "warranty" in c.representative.text.lower())
    assert warranty.unanswered == 2 and warranty.languages == {"en": 1, "de": 1}
    assert warranty.answer_rate == 0.0
    refund = next(c for c in gaps if "refund" in c.representative.text)
    assert refund.thumbs_down == 1 and refund.unanswered == 0
    assert not any("opening" in c.representative.text for c in gaps)


def test_top_questions_show_the_representative_in_the_operators_language(
    store: ConversationStore,
) -> None:
    ask(store, "shipping to Spain?", "en", sources=["shipping.md"])
    ask(store, "shipping nach Spanien?", "de", sources=["shipping.md"])
    ask(store, "shipping a España?", "es", sources=["shipping.md"])
    insights = service(store)
    [cluster] = insights.top_questions(everything(), language="de")
    assert cluster.representative.language == "de" and cluster.questions == 3
    [cluster] = insights.top_questions(everything(), language="fr")  # none in French
    assert cluster.representative.language in {"en", "de", "es"}
    assert cluster.answer_rate == 1.0  # sources shown, no grounded column: inferred


def test_source_usage_counts_cited_documents_and_lists_never_cited_ones(
    store: ConversationStore,
) -> None:
    ask(store, "refund?", sources=["refunds.md", "terms.md"], cites="see [1]")
    ask(store, "refund please", "de", sources=["refunds.md"], cites="[1]")
    ask(store, "password?", sources=["account.md"])  # shown, not cited
    usage = service(store, default=["refunds.md", "terms.md", "account.md", "faq.md"]).source_usage(
        everything()
    )
    assert [(u.source, u.cited, u.shown) for u in usage.cited] == [("refunds.md", 2, 2)]
    assert usage.cited[0].languages == {"en": 1, "de": 1}
    assert [u.source for u in usage.never_cited] == ["account.md", "faq.md", "terms.md"]
    assert usage.by_language == {"en": 1, "de": 1}


def _owned(store: ConversationStore, session: str, assistant: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE sessions SET assistant = :a WHERE id = :s"), {"a": assistant, "s": session}
        )


def test_filtering_by_assistant_shows_nothing_of_another_assistant(
    store: ConversationStore,
) -> None:
    mine, _ = ask(store, "refund for my shoes", sources=["refunds.md"], cites="[1]")
    theirs, _ = ask(store, "refund secret-of-bikes", sources=["bikes.md"], cites="[1]")
    theirs_gap, _ = ask(store, "warranty secret-of-bikes", grounded=False)
    _owned(store, mine, "shoes")
    _owned(store, theirs, "bikes")
    _owned(store, theirs_gap, "bikes")
    insights = service(store, default=["refunds.md"])
    only = Filters(assistant="shoes", since=everything().since, until=everything().until)
    dumped = [
        *(c.model_dump_json() for c in insights.top_questions(only, examples=10)),
        *(c.model_dump_json() for c in insights.content_gaps(only, examples=10)),
        insights.source_usage(only).model_dump_json(),
        *(r.model_dump_json() for r in insights.quality(only)),
    ]
    assert dumped and not any("bikes" in d for d in dumped)
    [top] = insights.top_questions(only)
    assert top.questions == 1 and top.examples[0].text == "refund for my shoes"


def test_quality_counts_per_day_language_and_assistant(store: ConversationStore) -> None:
    ask(store, "refund?", sources=["refunds.md"])
    session, answer_id = ask(store, "warranty?", "de", grounded=False)
    store.add_feedback(session, answer_id, "down")
    rows = service(store).quality(everything())
    by_language = {r.language: r for r in rows}
    assert by_language["en"].answered == 1 and by_language["en"].unanswered == 0
    assert by_language["de"].unanswered == 1 and by_language["de"].feedback == 1
    assert by_language["de"].score == 0.0 and by_language["de"].messages == 2
    assert by_language["en"].period == datetime.now(UTC).date()


def test_erasing_conversations_deletes_their_questions(store: ConversationStore) -> None:
    keep, _ = ask(store, "refund?")
    gone, _ = ask(store, "refund now", "de")
    insights = service(store)
    insights.refresh()
    with store.engine.begin() as conn:
        assert delete_for_sessions(conn, [gone]) == 1
    with Session(store.engine) as db:
        assert [q.session_id for q in db.query(QuestionRow)] == [keep]
        [cluster] = db.query(QuestionClusterRow).all()
        assert cluster.size == 1 and cluster.languages == '{"en": 1}'


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from tests.test_assistants import make_app

    app = make_app(tmp_path_factory.mktemp("insights"), server={"admin_failures": "1000/minute"})
    app.state.insights = InsightsService(
        app.state.services.conversations.engine,
        TopicEncoder(),
        None,
        threshold=0.9,
        report_wait_s=60,
    )
    with TestClient(app) as client:
        yield client


AUTH = {"Authorization": "Bearer admin-secret-123"}
ROUTES = ["top-questions", "content-gaps", "sources", "quality"]


@pytest.mark.parametrize("route", [*ROUTES, "refresh"])
def test_insights_routes_need_the_admin_key(api: Any, route: str) -> None:
    call = api.post if route == "refresh" else api.get
    assert call(f"/api/insights/{route}").status_code == 401
    wrong = call(f"/api/insights/{route}", headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.status_code in {401, 403}
    assert call(f"/api/insights/{route}", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "since=2026-13-01",
        "until=yesterday",
        "since=2026-05-02&until=2026-05-01",
        "since=2020-01-01&until=2026-01-01",
        "language=xx",
        "language=english",
        "language=de%00",
        "assistant=../x",
        "collection=a%20b",
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_insights_routes_refuse_bad_filters(api: Any, route: str, query: str) -> None:
    answer = api.get(f"/api/insights/{route}?{query}", headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=99999999999999999999", "examples=11", "operator_language=zz"],
)
def test_cluster_reports_refuse_huge_limits(api: Any, query: str) -> None:
    for route in ("top-questions", "content-gaps"):
        assert api.get(f"/api/insights/{route}?{query}", headers=AUTH).status_code == 422


def test_insights_routes_answer_reports(api: Any) -> None:
    store = api.app.state.services.conversations
    ask(store, "opening hours on Sunday?", sources=["a.md"], cites="[1]")
    ask(store, "opening hours heute?", "de", grounded=False)
    assert api.post("/api/insights/refresh", headers=AUTH).json() == {"pending": 0}
    top = api.get("/api/insights/top-questions?operator_language=de", headers=AUTH).json()
    assert top[0]["questions"] == 2 and top[0]["representative"]["language"] == "de"
    gaps = api.get("/api/insights/content-gaps?language=de", headers=AUTH).json()
    assert gaps[0]["unanswered"] == 1 and gaps[0]["languages"] == {"de": 1}
    week = api.get("/api/insights/quality?bucket=week", headers=AUTH).json()
    assert sum(r["questions"] for r in week) == 2


def test_a_failed_refresh_leaves_nothing_half_done(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ask(store, "refund?")
    insights = service(store)
    insights.refresh()
    ask(store, "refund again")
    ask(store, "password help")

    def fail(*_: Any) -> None:  # after the new questions were assigned in memory
        raise RuntimeError("database gone")

    monkeypatch.setattr(insights, "_save_clusters", fail)
    with pytest.raises(RuntimeError):
        insights.refresh()
    monkeypatch.undo()
    assert insights.refresh() == 2
    with Session(store.engine) as db:
        assert sorted(c.size for c in db.query(QuestionClusterRow)) == [1, 2]


def test_handed_over_questions_are_gaps_and_counted_per_day(store: ConversationStore) -> None:
    """A conversation handed to a person (the `handoffs` table) is a gap."""
    ask(store, "refund?", sources=["refunds.md"], cites="[1]")
    session, _ = ask(store, "warranty claim", "es", sources=["w.md"], cites="[1]")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO handoffs (id, session_id, state, reason, created)"
                " VALUES (1, :s, :st, :r, :c)"
            ),
            {
                "s": session,
                "st": "waiting",
                "r": "button",
                "c": datetime.now(UTC).replace(tzinfo=None),
            },
        )
    insights = service(store)
    [gap] = insights.content_gaps(everything())
    assert gap.handed_over == 1 and gap.representative.text == "warranty claim"
    rows = {r.language: r for r in insights.quality(everything(), "week")}
    assert rows["es"].handovers == 1 and rows["en"].handovers == 0


def test_a_report_does_not_wait_for_a_slow_clustering(store: ConversationStore) -> None:
    release = threading.Event()

    class Slow(TopicEncoder):
        def encode(self, texts: list[str]) -> np.ndarray:
            release.wait(30)  # a new language's reference statistics, a long backlog
            return super().encode(texts)

    ask(store, "refund?")
    insights = InsightsService(store.engine, Slow(), None, threshold=0.9, report_wait_s=0.1)
    assert insights.top_questions(everything()) == []  # answered with what is clustered
    assert insights.pending() == 1
    release.set()
    assert insights.catch_up(60) == 0
    assert len(insights.top_questions(everything())) == 1


def test_openapi_documents_the_insights_routes(api: Any) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for route in ROUTES:
        operation = paths[f"/api/insights/{route}"]["get"]
        assert operation["security"] == [{"AdminKey": []}] and operation["summary"]
        assert {"401", "403", "422"} <= set(operation["responses"])
        assert list(operation["responses"]["422"]["content"]) == ["application/problem+json"]
        assert "$ref" in str(operation["responses"]["200"]["content"]["application/json"])
    top = paths["/api/insights/top-questions"]["get"]
    assert {p["name"] for p in top["parameters"]} >= {
        "assistant",
        "collection",
        "language",
        "since",
        "until",
        "limit",
        "operator_language",
    }


def test_the_documents_of_a_knowledge_base_come_from_chroma(api: Any) -> None:
    from app.server.insights import chroma_documents

    documents = chroma_documents(api.app.state.services.client)
    assert documents("default") == ["monorail.md"] and documents("shop") == ["returns.md"]
    assert documents("no-such-kb") == []
