"""Language centring with the real model: the README's demo question, asked in German, finds the
English company history instead of a German passage about charging (issue 8), in search, in the
chat chain's retriever and in `kbchat eval`'s ranking alike."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "kb"
QUESTION = "Wann wurde das Unternehmen gegründet?"  # answered by en/company-history.txt


def test_demo_question_ranks_the_other_language_answer_first(tmp_path: Path, e5: Any) -> None:
    from app.chat.factory import build_chat_chain
    from app.evaluation import EvalQuery, evaluate
    from app.ingest import ingest_folder
    from app.language_stats import META_KEY, stored
    from app.search import search
    from app.settings import load_settings
    from app.store import make_client, open_collection

    kb = tmp_path / "kb"
    # Without the Spanish page: since HTML keeps only main content, its "Primera puesta en
    # marcha" chunk scores 0.7601 against the company history's 0.7584 after centring, a margin
    # centring alone cannot settle (issue 8's query-side correction and lexical bonus are next).
    shutil.copytree(EXAMPLES, kb, ignore=shutil.ignore_patterns("*.html"))
    alone = {"query_correction": "off", "sentence_weight": 0}  # centring alone
    on = load_settings(data_dir=tmp_path / "data", retrieval=alone)
    off = load_settings(data_dir=tmp_path / "data", retrieval={**alone, "language_centring": False})
    client = make_client(on)
    ingest_folder(on, kb, "demo", embedder=e5, client=client)
    collection = open_collection(client, "demo", e5.spec)
    means = stored(collection, e5.spec)  # recorded by the sync itself
    assert means is not None
    assert set(means.counts) == {"ar", "de", "en", "fr", "ja", "zh"}

    raw = search(off, QUESTION, collection_name="demo", k=3, embedder=e5, client=client)
    assert raw[0].source == "de/akku-und-laden.md"  # the own-language bias being fixed
    hits = search(on, QUESTION, collection_name="demo", k=3, embedder=e5, client=client)
    assert hits[0].source == "en/company-history.txt"
    assert hits[0].score == next(h.score for h in raw if h.source == hits[0].source)  # raw cosine

    chain = build_chat_chain(on, "demo", embedder=e5, client=client, llm=None)
    assert chain.retriever.retrieve(QUESTION)[0].source == "en/company-history.txt"

    query = [EvalQuery(QUESTION, "de", source="en/company-history.txt")]
    assert evaluate(e5, collection, query, k=3).overall["recall@1"] == 0.0
    centred = evaluate(e5, collection, query, k=3, means=means)
    assert centred.overall["recall@1"] == 1.0

    # The means follow the collection: a sync that drops the only German file recomputes them.
    (kb / "de" / "akku-und-laden.md").unlink()
    ingest_folder(on, kb, "demo", embedder=e5, client=client)
    after = stored(client.get_collection("demo"), e5.spec)
    assert after is not None and "de" not in after.counts
    assert META_KEY in (client.get_collection("demo").metadata or {})
