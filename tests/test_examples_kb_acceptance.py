"""Acceptance test of issue 8 on `examples/kb`, the knowledge base every new user tries first.

The README's demo questions rank the right document first, and one question per document in
each of the seven languages of examples/kb (en de es fr zh ja ar) ranks that document first,
with the product's ranking (`kbchat search`: the settings' corrections, no cut-off) over the
whole folder, HTML page included. The questions are in tests/data/examples_kb_questions.jsonl:
the same question per document in the seven languages, each answered by that document only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "kb"
QUESTIONS = Path(__file__).resolve().parent / "data" / "examples_kb_questions.jsonl"
ROWS = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]


def test_the_questions_cover_every_document_in_every_language() -> None:
    documents = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()}
    languages = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    asked = {(r["source"], r["lang"]) for r in ROWS if r["kind"] == "per-language"}
    assert asked == {(d, lang) for d in documents for lang in languages}
    assert {r["question"] for r in ROWS if r["kind"] == "demo"} >= {
        "Wann wurde das Unternehmen gegründet?",  # scripts/run.sh
        "¿Cuántos años de garantía tiene la batería?",  # scripts/run.sh
        "¿Cuánto dura la garantía?",  # README
    }


@pytest.fixture(scope="module")
def examples_kb(tmp_path_factory: pytest.TempPathFactory, e5_ct2: Any) -> tuple[Any, Any]:
    from app.ingest import ingest_folder
    from app.settings import load_settings
    from app.store import make_client

    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(EXAMPLES, root / "kb")
    settings = load_settings(data_dir=root / "data")
    client = make_client(settings)
    report = ingest_folder(settings, root / "kb", "examples", embedder=e5_ct2, client=client)
    assert not report.failed and not report.skipped
    return settings, client


# Questions the ranking still gets wrong with multilingual-e5-small (issue 8 stays open until
# this set is empty). Strict: a question that starts passing fails here until it is removed.
# Sentence vectors (ingestion/sentences.py) took examples/kb from 37 to 41 of 59 first; the int8
# encoder (the default on a CPU, issue 12) lost two near ties (39). Counting short sentences in
# the model's tokens instead of characters (Chinese and Japanese chunks had been left with one
# piece) kept 39 but changed which: ar/warranty now ranks first, de/instalacion and en/app-guide
# lost by 0.002. The CTranslate2 int8 encoder (the default on a CPU since) keeps 39: es/app-guide
# won, fr/maintenance lost. Most misses are such near ties.
KNOWN_MISSES = {
    *((lang, "faq") for lang in ("de", "es", "ja")),
    *((lang, "akku-und-laden") for lang in ("en", "es", "fr", "zh", "ja", "ar")),
    *((lang, "instalacion") for lang in ("de", "zh", "ja")),
    *((lang, "securite") for lang in ("de", "zh", "ja", "ar")),
    *((lang, "maintenance") for lang in ("en", "fr", "zh")),
    ("en", "app-guide"),
}


def _case(row: dict[str, str]) -> Any:
    stem = Path(row["source"]).stem
    miss = row["kind"] == "per-language" and (row["lang"], stem) in KNOWN_MISSES
    marks = [pytest.mark.xfail(strict=True, reason="known miss, issue 8")] if miss else []
    return pytest.param(row, id=f"{row['kind']}-{row['lang']}-{stem}", marks=marks)


@pytest.mark.parametrize("row", [_case(r) for r in ROWS])
def test_question_ranks_its_document_first(
    row: dict[str, str], examples_kb: tuple[Any, Any], e5_ct2: Any
) -> None:
    from app.search import search

    settings, client = examples_kb
    hits = search(
        settings, row["question"], collection_name="examples", k=8, embedder=e5_ct2, client=client
    )
    seen = [f"{h.source} (cosine {h.score:.4f}, ranking {h.ranking_score})" for h in hits]
    assert hits and hits[0].source == row["source"], (
        f"{row['question']!r} should rank {row['source']} first; got " + "; ".join(seen[:3])
    )
