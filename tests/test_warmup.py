"""The first chat of a process embeds nothing it does not have to: `kbchat model prepare` and the
server's start-up warm-up leave the exemplars' vectors and the language statistics on disk (and,
in the server, in memory), so the chain a new process builds reads them instead of embedding."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.chat.factory import build_small_talk
from app.chat.warmup import common_languages, warm_up
from app.query_correction import QueryCorrection
from app.server.handoff_phrase import HandoffPhrases
from app.settings import load_settings
from tests.fakes import FakeEmbedder

CALIBRATED = "intfloat/multilingual-e5-small"  # small talk and handoff phrases are on for it


class Encoding(FakeEmbedder):
    """FakeEmbedder with batch encoding (what the warm-up needs); counts the texts it embeds."""

    def __init__(self) -> None:
        super().__init__(CALIBRATED)
        self.encoded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return self._vectors(list(texts))


def test_after_warm_up_a_new_process_embeds_no_exemplar_and_no_prepared_language(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path)
    first = Encoding()
    warm_up(settings, first, ["de"])
    assert first.encoded > 200  # the exemplars (small talk, handoff) were embedded once

    later = Encoding()  # another process: nothing in memory, everything on disk
    small_talk = build_small_talk(settings, later)
    assert small_talk is not None and len(small_talk.vectors) == len(small_talk.exemplars)
    phrases = HandoffPhrases.for_model(later, settings.prompts_dir, settings.vector_cache_dir)
    assert phrases is not None
    phrases.prepare()
    references = QueryCorrection(later, settings.data_dir / "language_reference")
    assert references.reference("de") is not None
    assert later.encoded == 0


def test_warm_up_loads_the_language_identifier(tmp_path: Path) -> None:
    from ingestion.language import _identifier

    _identifier.cache_clear()
    warm_up(load_settings(data_dir=tmp_path), FakeEmbedder())  # even without batch encoding
    assert _identifier.cache_info().currsize == 1


def test_the_common_languages_are_the_small_talk_languages(tmp_path: Path) -> None:
    languages = common_languages(load_settings(data_dir=tmp_path))
    assert {"en", "de", "zh", "ar", "hi"} <= set(languages) and len(languages) >= 20


def test_the_server_warms_up_after_its_start_without_a_request(tmp_path: Path) -> None:
    from app.server.app import create_app

    settings = load_settings(data_dir=tmp_path / "data", ingest={"resync_on_start": False})
    embedder = Encoding()
    app = create_app(settings, embedder=embedder, llm=None, with_ui=False)
    with TestClient(app):
        deadline = time.monotonic() + 60
        while not list(settings.vector_cache_dir.glob("*.npz")):
            assert time.monotonic() < deadline, "no warm-up happened"
            time.sleep(0.05)
        while len(list(settings.vector_cache_dir.glob("*.npz"))) < 2:  # small talk, handoff
            assert time.monotonic() < deadline, "the warm-up did not finish"
            time.sleep(0.05)
    assert embedder.encoded > 200  # done by the server itself, before any chat
