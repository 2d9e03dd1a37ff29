"""Build the chat chain from settings; every part can be handed in instead (tests, the server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.chat.chain import ChatChain
from app.chat.extractive import SentencePicker
from app.chat.prompts import load_prompts
from app.chat.ranking import build_ranker
from app.chat.relevance import Relevance, default_min_margin
from app.chat.retriever import Retriever, default_min_score
from app.chat.small_talk import SmallTalk, default_small_talk_score, load_exemplars
from app.chat.translate import kb_translation
from app.language_stats import CollectionMeans
from app.store import langchain_store, make_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from langchain_core.language_models import BaseChatModel

    from app.embeddings.e5 import E5Embeddings
    from app.settings import Settings

_FROM_SETTINGS: Any = object()


def build_chat_chain(
    settings: Settings,
    collection_name: str | None = None,
    *,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
    llm: BaseChatModel | None = _FROM_SETTINGS,
) -> ChatChain:
    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    if llm is _FROM_SETTINGS:
        from app.chat.llm import build_chat_model

        llm = build_chat_model(settings)
    prompts = load_prompts(settings.prompts_dir)
    client = client or make_client(settings)
    name = collection_name or settings.collection
    store = langchain_store(client, name, embedder)
    min_score = settings.retrieval.min_score
    if min_score is None:
        min_score = default_min_score(
            embedder.spec.model_id, sentences=settings.retrieval.sentence_weight > 0
        )
    means = CollectionMeans(client, name, embedder.spec)
    centring = means if settings.retrieval.language_centring else None
    relevance = build_relevance(settings, embedder)
    retriever = Retriever(
        store,
        k=settings.retrieval.k,
        min_score=min_score,
        centring=centring,
        relevance=relevance,
        ranker=build_ranker(settings, embedder),
        collection=client.get_collection(name, embedding_function=None),  # one query a question
    )
    small_talk = build_small_talk(settings, embedder)
    translation = None
    if settings.llm.translate_query:
        translation = kb_translation(means, prompts, settings.llm.translate_languages)
    return ChatChain(
        retriever,
        prompts,
        llm,
        history_turns=settings.retrieval.history_turns,
        deadline=settings.llm.deadline,
        attempt_timeout=settings.llm.timeout,
        retries=settings.llm.max_retries,
        picker=SentencePicker(embedder),
        small_talk=small_talk,
        translation=translation,
    )


def build_relevance(settings: Settings, embedder: E5Embeddings) -> Relevance | None:
    """The per-query cut-off's margin part, when one is set or calibrated for the model."""
    min_margin = settings.retrieval.min_margin
    if min_margin is None:
        min_margin = default_min_margin(embedder.spec.model_id)
    if min_margin is None:
        return None
    return Relevance(embedder, min_margin, cache_dir=settings.vector_cache_dir)


def build_small_talk(settings: Settings, embedder: E5Embeddings) -> SmallTalk | None:
    """Small-talk detection, when it is on and calibrated (or configured) for the model."""
    talk_score = settings.retrieval.small_talk_min_score
    if talk_score is None:
        talk_score = default_small_talk_score(embedder.spec.model_id)
    if not settings.retrieval.small_talk or talk_score is None:
        return None
    exemplars = load_exemplars(settings.prompts_dir / "small_talk.json")
    return SmallTalk(embedder, exemplars, min_score=talk_score, cache_dir=settings.vector_cache_dir)
