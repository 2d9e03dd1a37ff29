"""The ranking levers with the real model on the README's example knowledge base: query
correction (the default, shift) computes its reference statistics once, in a folder named after
the model, and search, the chat chain's retriever and `kbchat eval` rank the same way with them.
It settles the German demo question that the raw model, and centring without the reference prior
(`evaluate` without a ranker), leave to another document."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "kb"
QUESTION = "Wann wurde das Unternehmen gegründet?"  # answered by en/company-history.txt
ANSWER = "en/company-history.txt"


def test_levers_rank_the_demo_answer_first_everywhere(tmp_path: Path, e5: Any) -> None:
    from app.chat.factory import build_chat_chain
    from app.chat.ranking import build_ranker
    from app.evaluation import EvalQuery, evaluate
    from app.ingest import ingest_folder
    from app.language_stats import stored
    from app.query_correction import spec_folder
    from app.search import search
    from app.settings import load_settings
    from app.store import make_client, open_collection

    kb = tmp_path / "kb"
    shutil.copytree(EXAMPLES, kb)  # the Spanish HTML page included
    on = load_settings(data_dir=tmp_path / "data")  # the defaults: centring and correction
    raw = {"query_correction": "off", "language_centring": False, "sentence_weight": 0}
    plain = load_settings(data_dir=tmp_path / "data", retrieval=raw)
    client = make_client(on)
    ingest_folder(on, kb, "demo", embedder=e5, client=client)
    collection = open_collection(client, "demo", e5.spec)

    raw_hits = search(plain, QUESTION, collection_name="demo", k=3, embedder=e5, client=client)
    assert raw_hits[0].source != ANSWER, [h.source for h in raw_hits]
    hits = search(on, QUESTION, collection_name="demo", k=3, embedder=e5, client=client)
    assert hits[0].source == ANSWER
    raw_score = next(h.score for h in raw_hits if h.source == ANSWER)
    assert hits[0].score == raw_score  # `score` stays the raw cosine
    cache = tmp_path / "data" / "language_reference" / spec_folder(e5.spec)
    # Statistics for the question's language and the knowledge base's, computed once, by model.
    kb_languages = ["ar", "de", "en", "es", "fr", "ja", "zh"]
    assert sorted(p.name for p in cache.iterdir()) == [f"{lang}.npz" for lang in kb_languages]

    chain = build_chat_chain(on, "demo", embedder=e5, client=client, llm=None)
    assert chain.retriever.retrieve(QUESTION, "de")[0].source == ANSWER

    query = [EvalQuery(QUESTION, "de", source=ANSWER)]
    means = stored(collection, e5.spec)
    ranker = build_ranker(on, e5)
    assert evaluate(e5, collection, query, k=3, means=means).overall["recall@1"] == 0.0
    assert (
        evaluate(e5, collection, query, k=3, means=means, ranker=ranker).overall["recall@1"] == 1.0
    )
