"""Retrieval evaluation: the queries file, the metrics by hand, and one run on a real Chroma."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from app.evaluation import (
    EvalInputError,
    EvalQuery,
    dedupe_sources,
    evaluate,
    first_relevant_rank,
    read_queries,
    report,
    score_ranks,
)
from app.ingest import ingest_folder
from app.settings import load_settings
from tests.fakes import FakeEmbedder

# --------------------------------------------------------------------------- read_queries


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_queries_good_file(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"question": "Wo ist der Bahnhof?", "lang": "de", "source": "de/city.md"}),
            "",
            "   ",
            json.dumps({"question": "Where is it?", "paragraph_id": 42}),
            json.dumps(
                {"question": "¿Dónde?", "lang": "es", "source": "a.md", "paragraph_id": "p"}
            ),
        ],
    )
    queries = read_queries(path)
    assert queries == [
        EvalQuery("Wo ist der Bahnhof?", "de", "de/city.md", None),
        EvalQuery("Where is it?", "all", None, "42"),  # no lang: "all"; ids become strings
        EvalQuery("¿Dónde?", "es", "a.md", "p"),
    ]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"source": "a.md"}), "question"),
        (json.dumps({"question": "  ", "source": "a.md"}), "question"),
        (json.dumps({"question": 3, "source": "a.md"}), "question"),
        (json.dumps({"question": "What?", "lang": "en"}), "'source' or 'paragraph_id'"),
    ],
)
def test_read_queries_bad_line_names_its_number(tmp_path: Path, bad: str, needle: str) -> None:
    good = json.dumps({"question": "Fine?", "source": "a.md"})
    path = write_lines(tmp_path / "q.jsonl", [good, "", bad, good])
    with pytest.raises(EvalInputError, match=r"q\.jsonl:3: ") as info:
        read_queries(path)
    assert needle in str(info.value)


def test_read_queries_empty_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "q.jsonl", ["", "  "])
    with pytest.raises(EvalInputError, match="no queries"):
        read_queries(path)


# --------------------------------------------------------------------------- ranks and metrics


def test_first_relevant_rank_by_source_and_by_paragraph_id() -> None:
    ranked = ["x.md", "de/p17.txt", "en/p42.md", "a.md"]
    assert first_relevant_rank(EvalQuery("q", "en", source="a.md"), ranked) == 4
    assert first_relevant_rank(EvalQuery("q", "en", source="p42.md"), ranked) is None  # exact
    assert first_relevant_rank(EvalQuery("q", "en", paragraph_id="p42"), ranked) == 3  # stem
    assert first_relevant_rank(EvalQuery("q", "en", paragraph_id="p4"), ranked) is None
    # source wins over paragraph_id when both are given
    both = EvalQuery("q", "en", source="x.md", paragraph_id="p42")
    assert first_relevant_rank(both, ranked) == 1
    assert first_relevant_rank(EvalQuery("q", "en", source="a.md"), []) is None


def test_score_ranks_by_hand() -> None:
    ranks: list[int | None] = [1, 2, None, 5]
    got = score_ranks(ranks, 10)
    expected = {
        "recall@1": 1 / 4,
        "recall@5": 3 / 4,
        "recall@10": 3 / 4,
        "mrr@10": (1 + 1 / 2 + 1 / 5) / 4,
        "ndcg@10": (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4,
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-4), name
    assert got["recall@1"] == 0.25
    assert got["recall@5"] == 0.75
    assert got["mrr@10"] == pytest.approx(0.425)


def test_score_ranks_cut_at_k() -> None:
    got = score_ranks([1, 7, None], 5)
    assert set(got) == {"recall@1", "recall@5", "mrr@5", "ndcg@5"}  # no recall@10 above k
    assert got["recall@5"] == pytest.approx(1 / 3, abs=1e-4)
    assert got["mrr@5"] == pytest.approx(1 / 3, abs=1e-4)  # rank 7 is past k: it scores 0
    assert got["ndcg@5"] == pytest.approx(1 / 3, abs=1e-4)
    perfect = score_ranks([1, 1], 10)
    assert all(v == 1.0 for v in perfect.values())
    assert all(v == 0.0 for v in score_ranks([None, None], 10).values())


def test_dedupe_sources_collapses_chunks_of_one_file() -> None:
    metas = [
        {"source": "a.md", "chunk_index": 0},
        {"source": "a.md", "chunk_index": 3},
        {"source": "b.md", "chunk_index": 0},
        {"source": "a.md", "chunk_index": 1},
        {"source": "c.md", "chunk_index": 2},
        {"source": "d.md", "chunk_index": 0},
    ]
    assert dedupe_sources(metas, 10) == ["a.md", "b.md", "c.md", "d.md"]
    assert dedupe_sources(metas, 2) == ["a.md", "b.md"]
    assert dedupe_sources([], 5) == []


def test_report_groups_per_language() -> None:
    queries = [
        EvalQuery("q1", "de", "a.md"),
        EvalQuery("q2", "en", "b.md"),
        EvalQuery("q3", "de", "c.md"),
        EvalQuery("q4", "en", "d.md"),
    ]
    rep = report(queries, [1, 2, None, 5], 10)
    assert rep.k == 10 and rep.queries == 4
    assert rep.overall == score_ranks([1, 2, None, 5], 10)
    assert list(rep.by_language) == ["de", "en"]
    assert rep.by_language["de"]["recall@1"] == 0.5
    assert rep.by_language["de"]["mrr@10"] == 0.5
    assert rep.by_language["en"]["recall@1"] == 0.0
    assert rep.by_language["en"]["recall@5"] == 1.0
    assert rep.by_language["en"]["mrr@10"] == pytest.approx((1 / 2 + 1 / 5) / 2, abs=1e-4)
    assert rep.to_dict() == {
        "k": 10,
        "queries": 4,
        "overall": rep.overall,
        "by_language": rep.by_language,
        "queries_by_language": {"de": 2, "en": 2},
    }
    with pytest.raises(ValueError):
        report(queries, [1, 2], 10)  # one rank per query


# --------------------------------------------------------------------------- end to end


class EncodingFakeEmbedder(FakeEmbedder):
    """What `evaluate` calls: `encode` takes texts already in their query form, adds nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        return self._vectors(list(texts))


DOCS = {
    "volcano.md": "Volcano lava magma eruption. " * 6,
    "recipes/pasta.txt": "Spaghetti carbonara pancetta pecorino. " * 6,
    "de/zug.txt": "Fahrplan Bahnhof Gleis Verspätung. " * 6,
    "es/playa.md": "Playa arena sombrilla bronceador. " * 6,
}
QUERIES = [
    EvalQuery("volcano lava magma eruption", "en", source="volcano.md"),
    EvalQuery("spaghetti carbonara pancetta pecorino", "en", paragraph_id="pasta"),
    EvalQuery("Fahrplan Bahnhof Gleis Verspätung", "de", source="de/zug.txt"),
    EvalQuery("playa arena sombrilla bronceador", "es", source="es/playa.md"),
]


@pytest.fixture
def collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    for name in list(os.environ):
        if name.startswith("KBCHAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    root = tmp_path / "kb"
    for rel, text in DOCS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    settings = load_settings(data_dir=tmp_path / "data")
    result = ingest_folder(settings, root, "evaltest", embedder=FakeEmbedder(), client=client)
    assert sorted(result.added) == sorted(DOCS)
    assert result.failed == []
    return client.get_collection("evaltest")


def test_evaluate_ranks_the_right_file_first(collection: Any) -> None:
    embedder = EncodingFakeEmbedder()
    rep = evaluate(cast(Any, embedder), collection, QUERIES, k=10)
    assert rep.queries == 4
    assert rep.overall["recall@1"] == 1.0
    assert rep.overall["mrr@10"] == 1.0
    assert rep.overall["ndcg@10"] == 1.0
    assert sorted(rep.by_language) == ["de", "en", "es"]
    assert all(m["recall@1"] == 1.0 for m in rep.by_language.values())
    # the profile's query form went to the model, one text per query
    assert embedder.encoded == [f"query: {q.question}" for q in QUERIES]


def test_evaluate_counts_a_missing_document_as_a_miss(collection: Any) -> None:
    queries = [*QUERIES, EvalQuery("volcano lava magma eruption", "xx", source="nowhere.md")]
    rep = evaluate(
        cast(Any, EncodingFakeEmbedder()), collection, queries, k=10, batch=2
    )  # three batches
    assert rep.queries == 5
    assert rep.overall["recall@1"] == 0.8
    assert rep.overall["recall@10"] == 0.8
    assert rep.by_language["xx"] == {
        "recall@1": 0.0,
        "recall@5": 0.0,
        "recall@10": 0.0,
        "mrr@10": 0.0,
        "ndcg@10": 0.0,
    }
    assert rep.by_language["en"]["recall@1"] == 1.0


def test_evaluate_wrong_targets_are_not_first(collection: Any) -> None:
    targets = [q.source or "recipes/pasta.txt" for q in QUERIES]
    rotated = [
        EvalQuery(q.question, q.lang, source=t)
        for q, t in zip(QUERIES, targets[1:] + targets[:1], strict=True)
    ]
    rep = evaluate(cast(Any, EncodingFakeEmbedder()), collection, rotated, k=10)
    assert rep.overall["recall@1"] == 0.0
    assert rep.overall["recall@10"] == 1.0  # four files: every one is somewhere in the top 10
    assert 0.0 < rep.overall["mrr@10"] < 1.0


def test_document_ranks_collapse_chunks_and_cut_at_k() -> None:
    from app.evaluation import document_ranks

    ranked = {"q1": ["a.md", "a.md", "b.md"], "q2": ["a.md", "b.md", "c.md"], "q3": []}
    queries = [
        EvalQuery("q1", "en", "b.md"),
        EvalQuery("q2", "en", "c.md"),
        EvalQuery("q3", "en", "a.md"),
    ]
    assert document_ranks(ranked.__getitem__, queries, 3) == [2, 3, None]
    assert document_ranks(ranked.__getitem__, queries, 2) == [2, None, None]


def test_sample_per_language_spreads_evenly_and_keeps_order() -> None:
    from app.evaluation import sample_per_language

    queries = [EvalQuery(f"{lang}{i}", lang, "a.md") for lang in ("de", "zh") for i in range(10)]
    queries.append(EvalQuery("ar0", "ar", "a.md"))
    picked = [q.question for q in sample_per_language(queries, 3)]
    assert picked == ["de0", "de3", "de6", "zh0", "zh3", "zh6", "ar0"]
    assert sample_per_language(queries, 50) == queries
