"""Retrieval for `kbchat search`: the chat chain's Retriever, without the relevance cut-off."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from app.chat.ranking import build_ranker
from app.chat.retriever import Retriever
from app.language_stats import CollectionMeans
from app.store import langchain_store, make_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from app.embeddings.e5 import E5Embeddings
    from app.settings import Settings


@dataclass(frozen=True)
class Hit:
    source: str
    title: str
    language: str
    score: float  # cosine similarity, 1 - Chroma's cosine distance
    text: str
    chunk_index: int
    page: int | None = None
    ranking_score: float | None = None  # what ranked it: the cosine minus its language offset
    url: str | None = None  # the document's own web address, when it states one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    settings: Settings,
    query: str,
    *,
    collection_name: str | None = None,
    k: int = 5,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
) -> list[Hit]:
    retriever = ranking_retriever(
        settings, collection_name=collection_name, k=k, embedder=embedder, client=client
    )
    return [
        Hit(
            s.source,
            s.title,
            s.language,
            s.score,
            s.text,
            s.chunk_index,
            s.page,
            s.ranking_score,
            s.url,
        )
        for s in retriever.retrieve(query)
    ]


def ranking_retriever(
    settings: Settings,
    *,
    collection_name: str | None = None,
    k: int = 5,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
) -> Retriever:
    """The Retriever ranking exactly as settings.retrieval says, with no cut-off.

    `kbchat search` and `kbchat eval` both rank through it, so an evaluation measures the
    ranking users get, whichever corrections are switched on.
    """
    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    client = client or make_client(settings)
    name = collection_name or settings.collection
    store = langchain_store(client, name, embedder)
    centring = None
    if settings.retrieval.language_centring:
        centring = CollectionMeans(client, name, embedder.spec)
    return Retriever(
        store, k=k, min_score=None, centring=centring, ranker=build_ranker(settings, embedder)
    )
