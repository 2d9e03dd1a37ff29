"""Language centring: per-language means with shrinkage, recorded with the collection, and the
Retriever's re-ranking, on a real (embedded) Chroma with vectors of known geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from app.chat.retriever import Retriever
from app.embeddings.e5 import EmbeddingSpec
from app.language_stats import (
    META_KEY,
    CollectionMeans,
    LanguageMeans,
    compute_for_collection,
    refresh,
    stored,
)
from app.store import langchain_store, open_collection

DIM = 64
SPEC = EmbeddingSpec("toy/e5", "toy", "e5", DIM, 512)
EN, DE, FR = 0, 1, 2  # language directions; topics live in the axes from 10 on


def unit(*parts: tuple[int, float]) -> np.ndarray:
    v = np.zeros(DIM)
    for axis, weight in parts:
        v[axis] += weight
    return v / np.linalg.norm(v)


def topics(n: int) -> np.ndarray:
    """Random topic directions (seeded). Not orthogonal axes: HNSW drops nodes from a graph of
    exactly equidistant points, and Chroma would then miss the very document under test."""
    t = np.zeros((n, DIM))
    t[:, 10:] = np.random.default_rng(0).normal(size=(n, DIM - 10))
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def doc(language_axis: int, weight: float, topic: np.ndarray) -> np.ndarray:
    v = weight * np.eye(DIM)[language_axis] + topic
    return v / np.linalg.norm(v)


class Table(Embeddings):
    """Queries are looked up by text: the geometry is the test's, not a model's."""

    spec = SPEC

    def __init__(self, queries: dict[str, np.ndarray]) -> None:
        self.queries = queries

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.queries[text]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("documents are added with their vectors")


def make_kb(
    tmp_path: Path, docs: dict[str, tuple[str, np.ndarray]], queries: dict[str, np.ndarray]
) -> tuple[Any, Any, Any]:
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    collection = open_collection(client, "toykb", SPEC, create=True)
    collection.add(
        ids=list(docs),
        embeddings=[v.tolist() for _, v in docs.values()],
        metadatas=[{"source": name, "language": lang} for name, (lang, _) in docs.items()],
        documents=list(docs),
    )
    table = Table(queries)
    return client, collection, langchain_store(client, "toykb", table)


def test_offsets_leave_the_passage_out_and_shrink_towards_the_overall_mean() -> None:
    vectors = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.6, 0.8], [0, 0, 1.0]])
    langs = ["en", "en", "en", "de"]
    means = LanguageMeans.compute(vectors, langs, {}, shrink=2)
    np.testing.assert_allclose(means.means["en"], vectors[:3].mean(axis=0))
    assert means.counts == {"de": 1, "en": 3}
    overall = vectors.mean(axis=0)
    q = np.array([0.0, 0.6, 0.8])
    raw = vectors @ q
    got = means.offsets(q, ["en", "en", "de", "xx"], [raw[0], raw[2], raw[3], 0.5])
    # en chunk 0: the mean of the other two en chunks and 2x the overall mean, over 2 + 2
    other = (vectors[1] + vectors[2] + 2 * overall) / 4
    assert got[0] == pytest.approx(q @ other - q @ overall)
    other = (vectors[0] + vectors[1] + 2 * overall) / 4
    assert got[1] == pytest.approx(q @ other - q @ overall)
    # the only de chunk: no other chunk of its language, so only the overall mean: no correction
    assert got[2] == pytest.approx(0.0)
    assert got[3] == 0.0  # a language the means do not know is not corrected
    plain = LanguageMeans.compute(vectors, langs, {}, shrink=0)
    assert plain.offsets(q, ["de"], [raw[3]])[0] == 0.0  # n - 1 + k = 0: nothing to compare with


def test_means_survive_json_and_are_ignored_under_another_model(tmp_path: Path) -> None:
    docs = {"a": ("en", unit((EN, 1), (10, 1))), "b": ("de", unit((DE, 1), (11, 1)))}
    _, collection, _ = make_kb(tmp_path, docs, {})
    assert stored(collection, SPEC) is None
    made = refresh(collection, SPEC)
    assert made is not None
    back = stored(collection, SPEC)
    assert back is not None and back.counts == {"de": 1, "en": 1}
    np.testing.assert_allclose(back.means["de"], made.means["de"], atol=1e-6)
    other = EmbeddingSpec("other/e5", "toy", "e5", DIM, 512)
    assert stored(collection, other) is None  # vectors of another model never mix


def german_distractor_kb(tmp_path: Path) -> tuple[Any, Any, Any]:
    """A German question about topic 10, answered by an English document; German documents on
    other topics share the question's language direction and win on the raw cosine."""
    t = topics(12)
    docs = {f"en{j}.txt": ("en", doc(EN, 1.0, t[j])) for j in range(6)}
    docs |= {f"de{j}.txt": ("de", doc(DE, 1.5, t[j])) for j in range(6, 12)}
    q = doc(DE, 1.0, t[0])
    return make_kb(tmp_path, docs, {"frage": q})


def test_centring_ranks_the_other_language_answer_first(tmp_path: Path) -> None:
    client, _, store = german_distractor_kb(tmp_path)
    raw = Retriever(store, k=3).retrieve("frage")
    assert raw[0].source.startswith("de")  # the bias this fixes
    centred = Retriever(store, k=3, centring=CollectionMeans(client, "toykb", SPEC)).retrieve(
        "frage"
    )
    assert centred[0].source == "en0.txt"
    assert centred[0].score == pytest.approx(0.5, abs=1e-3)  # Source.score stays the raw cosine
    assert [s.number for s in centred] == [1, 2, 3]


def test_cut_off_applies_to_the_raw_cosine(tmp_path: Path) -> None:
    client, _, store = german_distractor_kb(tmp_path)
    centring = CollectionMeans(client, "toykb", SPEC)
    got = Retriever(store, k=5, min_score=0.55, centring=centring).retrieve("frage")
    assert got and all(s.source.startswith("de") and s.score >= 0.55 for s in got)


def test_one_german_document_among_fifty_english_is_not_hurt(tmp_path: Path) -> None:
    """With one chunk, a language's plain mean is that chunk: subtracting it would erase the
    chunk's own score, and an English document on a related topic would win (as measured with the
    real model, docs/language_centring.md). Leaving the chunk out of its own mean keeps it first
    for questions about it, in either language. Scores crowd high as E5's do (common axis 5)."""
    t = topics(52)

    def vec(language_axis: int, topic: np.ndarray) -> np.ndarray:
        v = 0.5 * np.eye(DIM)[language_axis] + topic + 1.5 * np.eye(DIM)[5]
        return v / np.linalg.norm(v)

    docs = {f"en{j}.txt": ("en", vec(EN, t[j])) for j in range(1, 50)}
    docs["en0.txt"] = ("en", vec(EN, 0.7 * t[50] + np.sqrt(0.51) * t[51]))  # a related topic
    docs["de.txt"] = ("de", vec(DE, t[50]))
    queries = {"de": vec(DE, t[50]), "en": vec(EN, t[50])}
    client, _, store = make_kb(tmp_path, docs, queries)
    centring = CollectionMeans(client, "toykb", SPEC)
    for question in queries:
        assert Retriever(store, k=3).retrieve(question)[0].source == "de.txt"  # raw: first
        assert Retriever(store, k=3, centring=centring).retrieve(question)[0].source == "de.txt"


def test_means_are_computed_lazily_and_followed_after_a_change(tmp_path: Path) -> None:
    client, collection, _ = german_distractor_kb(tmp_path)
    assert META_KEY not in (collection.metadata or {})
    centring = CollectionMeans(client, "toykb", SPEC)
    first = centring.current()
    assert first is not None and first.counts == {"de": 6, "en": 6}
    assert stored(client.get_collection("toykb"), SPEC) is not None  # recorded for the next reader
    collection.add(
        ids=["fr"],
        embeddings=[unit((FR, 1), (30, 1)).tolist()],
        metadatas=[{"source": "fr.txt", "language": "fr"}],
        documents=["fr"],
    )
    refresh(collection, SPEC)  # what every sync does (app/ingest.py)
    later = centring.current()
    assert later is not None and later.counts == {"de": 6, "en": 6, "fr": 1}


def test_means_are_looked_up_at_most_every_max_age_and_at_once_after_a_local_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy server asks for the means at every question: the collection is looked up in the
    store once per max_age, a change recorded elsewhere is followed after max_age, and one
    recorded in this process (a sync here) at the next question."""
    from app.store import update_metadata

    client, collection, _ = german_distractor_kb(tmp_path)
    now = [100.0]
    centring = CollectionMeans(client, "toykb", SPEC, max_age=1.0, clock=lambda: now[0])
    first = centring.current()
    assert first is not None and first.counts == {"de": 6, "en": 6}
    lookups: list[str] = []
    real = client.get_collection

    def counted(name: str, **kwargs: Any) -> Any:
        lookups.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(client, "get_collection", counted)
    for _ in range(5):
        assert centring.current() is not None
    assert len(lookups) <= 1  # the first call after refresh looks again, then no more
    looked = len(lookups)
    collection.add(
        ids=["fr"],
        embeddings=[unit((FR, 1), (30, 1)).tolist()],
        metadatas=[{"source": "fr.txt", "language": "fr"}],
        documents=["fr"],
    )
    # another process's sync: what it records reaches the store without this process knowing
    update_metadata(collection, **{META_KEY: ""})
    now[0] += 0.5
    held = centring.current()  # within max_age: the means as read before
    assert held is not None and held.counts == first.counts and len(lookups) == looked
    now[0] += 0.6
    assert centring.current() is None  # after max_age: what the store holds now ("": none)
    assert len(lookups) == looked + 1
    refresh(collection, SPEC)  # a sync in this process
    later = centring.current()
    assert later is not None and later.counts == {"de": 6, "en": 6, "fr": 1}
    assert len(lookups) == looked + 2


def test_compute_for_an_empty_collection_is_none(tmp_path: Path) -> None:
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    empty = open_collection(client, "empty", SPEC, create=True)
    assert compute_for_collection(empty, SPEC) is None


def test_a_reference_prior_corrects_languages_with_one_chunk_each() -> None:
    """Leave-one-out means of one-chunk languages are just the overall mean (no correction);
    the prior measured on generic sentences still takes the question's language out."""
    a, b, x, y = np.eye(4)
    d1, d2 = a + x, b + y  # topic a in language x, topic b in language y
    docs = np.stack([d1 / np.linalg.norm(d1), d2 / np.linalg.norm(d2)])
    q = b + 1.2 * x  # asks about topic b, in language x
    q = q / np.linalg.norm(q)
    means = LanguageMeans.compute(docs, ["x", "y"], {})
    raw = docs @ q
    plain = raw - means.offsets(q, ["x", "y"], raw)
    assert plain[0] > plain[1]  # own language wins: nothing to correct with
    prior = {"x": (x - y) / 2, "y": (y - x) / 2}
    corrected = raw - means.offsets(q, ["x", "y"], raw, prior)
    assert corrected[1] > corrected[0]
    assert means.offsets(q, ["z"], [0.5], prior)[0] == 0.0  # an unknown language is left alone


class Shift:
    """A query correction that leans the question towards axis EN (it needs stored vectors)."""

    def correct(self, q: np.ndarray, language: Any, target: Any = None) -> np.ndarray:
        moved = q + 0.3 * np.eye(DIM)[EN]
        return moved / np.linalg.norm(moved)


def test_reranking_with_stored_vectors_costs_one_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-ranking by the candidates' stored vectors used to look them up again after the search
    (a second round trip to the store per question); with the collection the search brings them.
    Same ranking, same scores either way."""
    from chromadb.api.models.Collection import Collection

    from app.chat.ranking import Ranker

    client, collection, store = german_distractor_kb(tmp_path)
    centring = CollectionMeans(client, "toykb", SPEC)
    ranker = Ranker(Shift())  # type: ignore[arg-type]
    through_store = Retriever(store, k=4, centring=centring, ranker=ranker).retrieve("frage", "de")
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(Collection, name)

        def counted(self: Collection, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(self, *args, **kwargs)

        return counted

    for name in ("get", "query"):
        monkeypatch.setattr(Collection, name, spy(name))
    direct = Retriever(
        store, k=4, centring=centring, ranker=ranker, collection=collection
    ).retrieve("frage", "de")
    assert calls == ["query"]
    assert direct == through_store
    assert direct[0].source == "en0.txt"
