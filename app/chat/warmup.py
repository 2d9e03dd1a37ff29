"""What a process's first chat would otherwise embed or load, done before it: the small-talk and
handoff exemplars' vectors, the relevance reference, the query-correction statistics of the
languages likely to be asked in, and the language identifier's model (0.5 CPU seconds of the
first HTTP chat, measured). The vectors are read from the data dir when an earlier process made
them (app.embeddings.vector_cache, app.query_correction), so after `kbchat model prepare` or an
ingest this costs milliseconds; without, it costs the embedding the first chat would have paid.

`kbchat model prepare` runs it for `common_languages` (an ingest already prepares the statistics
of the collection's languages, app.ingest), and `kbchat serve` in a background thread once the
model is loaded, for the languages of every collection (never on the request path, never
delaying /api/ready).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


def common_languages(settings: Settings) -> list[str]:
    """The languages small talk has exemplars in (prompts/small_talk.json): the 31 the product
    is written to greet in, about 1.7 CPU seconds each to prepare with the int8 encoder."""
    data = json.loads((settings.prompts_dir / "small_talk.json").read_text(encoding="utf-8"))
    return sorted(
        {lang for kind, rows in data.items() if not kind.startswith("_") for lang in rows}
    )


def warm_up(settings: Settings, embedder: Any, languages: Iterable[str] = ()) -> None:
    """Embed (or read) what a first chat needs; an encoder that cannot batch-encode (a test
    fake) has nothing to prepare."""
    from ingestion.language import detect_language

    detect_language("Wie lange dauert das Laden des Akkus?")  # loads the language model once
    if not callable(getattr(embedder, "encode", None)):
        return
    from app.chat.factory import build_relevance, build_small_talk
    from app.chat.relevance import reference_vector
    from app.query_correction import prepare
    from app.server.handoff_phrase import HandoffPhrases

    small_talk = build_small_talk(settings, embedder)
    if small_talk is not None:
        _ = small_talk.vectors
    relevance = build_relevance(settings, embedder)
    if relevance is not None:
        reference_vector(embedder, relevance.sentences, relevance.cache_dir)
    phrases = HandoffPhrases.for_model(embedder, settings.prompts_dir, settings.vector_cache_dir)
    if phrases is not None:
        phrases.prepare()
    prepare(settings, embedder, languages)
