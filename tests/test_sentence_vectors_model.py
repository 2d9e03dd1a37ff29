"""Sentence vectors with the real model and real Chroma: ingestion keeps each chunk's sentence
vectors with it, a sync that changes a file replaces them, and ranking by the best sentence
finds the one sentence that answers inside a chunk about many things, where the chunk's own
vector loses to a chunk that is about the question's topic as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

HANDBOOK = (
    "Welcome to the Northwind factory shop and museum. The museum shows the history of our"
    " bicycles since 1962. Children under twelve enter for free. The shop sells spare parts,"
    " helmets and tyres. The centre opens at nine in the morning and closes at six in the"
    " evening. Parking is free for the first two hours in the south car park. The cafeteria on"
    " the ground floor serves vegetarian lunches every weekday. Guided tours of the factory start"
    " every hour and last forty minutes. Lost property can be collected at the reception desk."
    " Group visits of more than fifteen people must be booked a week ahead. Dogs are welcome in"
    " the garden but not in the museum. Photography is allowed everywhere except in the workshop."
)
PARKING = (
    "Our car parks. The north car park has 200 spaces and charging points for electric cars."
    " The south car park is next to the main entrance. Season tickets for the car parks can be"
    " bought online. Motorcycles park in the marked area next to the bicycle racks."
)
QUESTION = "Wie lange ist das Parken kostenlos?"  # answered by one sentence of the handbook


def _chunk(client: Any, name: str, source: str) -> dict[str, Any]:
    got = client.get_collection(name).get(where={"source": source}, include=["metadatas"])
    assert len(got["ids"]) == 1
    return dict(got["metadatas"][0])


def test_sentences_are_kept_with_their_chunk_and_rank_it(tmp_path: Path, e5: Any) -> None:
    from app.ingest import ingest_folder
    from app.search import search
    from app.settings import load_settings
    from app.store import make_client
    from ingestion.sentences import META_KEY, sentence_texts, token_counter, unpack

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "visitors.txt").write_text(HANDBOOK)
    (kb / "parking.txt").write_text(PARKING)
    settings = load_settings(data_dir=tmp_path / "data")
    client = make_client(settings)
    report = ingest_folder(settings, kb, "visits", embedder=e5, client=client)

    tokens = token_counter(e5.tokenizer)
    sentences = sentence_texts(HANDBOOK, "en", tokens)
    assert report.sentences_embedded == len(sentences) + len(sentence_texts(PARKING, "en", tokens))
    stored = unpack(_chunk(client, "visits", "visitors.txt")[META_KEY], e5.spec.dimension)
    assert stored is not None and stored.shape == (len(sentences), e5.spec.dimension)
    fresh = e5.encode_passages(sentences)
    assert np.allclose(stored, fresh, atol=2e-3)  # float16 of the sentences' passage vectors

    plain = load_settings(data_dir=tmp_path / "data", retrieval={"sentence_weight": 0})
    ask = {"collection_name": "visits", "k": 2, "embedder": e5, "client": client}
    assert search(plain, QUESTION, **ask)[0].source == "parking.txt"
    hits = search(settings, QUESTION, **ask)
    assert hits[0].source == "visitors.txt"
    assert hits[0].score == next(
        h.score for h in search(plain, QUESTION, **ask) if h.source == "visitors.txt"
    )

    # A changed file gets its new sentences' vectors, not the old ones.
    shorter = HANDBOOK.split(" Group visits")[0]
    (kb / "visitors.txt").write_text(shorter)
    ingest_folder(settings, kb, "visits", embedder=e5, client=client)
    again = unpack(_chunk(client, "visits", "visitors.txt")[META_KEY], e5.spec.dimension)
    assert again is not None and len(again) == len(sentence_texts(shorter, "en", tokens))

    # Switched off at ingestion: no sentence vectors, and ranking falls back to the chunk's own.
    off = load_settings(data_dir=tmp_path / "data", chunk={"sentence_vectors": False})
    report = ingest_folder(off, kb, "plain", embedder=e5, client=client)
    assert report.sentences_embedded == 0
    assert META_KEY not in _chunk(client, "plain", "visitors.txt")
    ask["collection_name"] = "plain"
    assert [h.source for h in search(settings, QUESTION, **ask)] == [
        h.source for h in search(plain, QUESTION, **ask)
    ]
