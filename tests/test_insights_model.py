"""Question clustering with the real multilingual-e5-small: one question asked in five
languages is one cluster, different questions are not, with the shipped threshold and the
language correction the service uses (reference statistics from a slice of the shipped Tatoeba
sample, to keep the test fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.query_correction import QueryCorrection, shipped_sentences
from app.server.insights import InsightsService
from app.server.question_clusters import ClusterIndex, threshold_for

SAME = {  # one question, five languages
    "en": "How can I reset my password?",
    "de": "Wie kann ich mein Passwort zurücksetzen?",
    "es": "¿Cómo puedo restablecer mi contraseña?",
    "fr": "Comment puis-je réinitialiser mon mot de passe ?",
    "zh": "我怎样才能重置我的密码？",
}
OTHERS = [  # different questions, in the same languages
    ("en", "When will my order be delivered?"),
    ("de", "Kann ich ein Produkt nach 30 Tagen zurückgeben?"),
    ("es", "¿Cuáles son sus horarios de apertura?"),
    ("fr", "Est-ce que la garantie couvre les dégâts d'eau ?"),
    ("zh", "你们接受哪些付款方式？"),
    ("en", "Do you ship to Canada?"),
]


@pytest.fixture(scope="module")
def service(e5: Any, tmp_path_factory: pytest.TempPathFactory) -> InsightsService:
    languages = {*SAME, *(lang for lang, _ in OTHERS)}
    sample = {lang: shipped_sentences()[lang][:40] for lang in languages}
    cache: Path = tmp_path_factory.mktemp("language_reference")
    correction = QueryCorrection(e5, cache, mode="mean", sentences=sample)
    return InsightsService(engine=None, encoder=e5, correction=correction)  # type: ignore[arg-type]


def test_one_question_in_five_languages_is_one_cluster_and_others_are_not(
    service: InsightsService, e5: Any
) -> None:
    texts = [*SAME.values(), *(t for _, t in OTHERS)]
    languages = [*SAME, *(lang for lang, _ in OTHERS)]
    vectors = service.vectors(texts, languages)
    for batch in (len(texts), 1):  # all at once, and one question at a time (incremental)
        index = ClusterIndex(vectors.shape[1], threshold_for(e5.spec.model_id))
        placed = [
            a.cluster
            for lo in range(0, len(texts), batch)
            for a in index.assign(vectors[lo : lo + batch])
        ]
        same, others = placed[: len(SAME)], placed[len(SAME) :]
        scores = (vectors @ vectors.T).round(3)
        assert len(set(same)) == 1, (dict(zip(SAME, same, strict=True)), scores)
        assert same[0] not in others, scores
        assert len(set(others)) == len(OTHERS), scores
