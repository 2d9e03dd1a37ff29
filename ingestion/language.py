"""Guess the language of a document so retrieval can filter or route by it.

Uses py3langid (a small naive-Bayes model, no network). The model is loaded once,
lazily, so importing this module stays cheap for code paths that never need it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

UNDETERMINED = "und"
# Below this many letters the classifier is close to guessing.
MIN_LETTERS = 10
# Below this normalised probability we would rather say "und" than mislabel.
MIN_PROBABILITY = 0.5
HEAD_CHARS = 2000
MIDDLE_CHARS = 1000

# py3langid mostly returns ISO 639-1 codes, but a few labels are ISO 639-3
# varieties of a macro-language; fold them into the 2-letter code callers expect.
_TO_ISO639_1: dict[str, str] = {
    "ary": "ar",  # Moroccan Arabic
    "arz": "ar",  # Egyptian Arabic
    "wuu": "zh",  # Wu Chinese
    "yue": "zh",  # Cantonese
    "uzs": "uz",  # Southern Uzbek
    "gug": "gn",  # Paraguayan Guarani
    "fuv": "ff",  # Nigerian Fulfulde
    "zxx": UNDETERMINED,  # "no linguistic content"
}


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """Build the identifier once; normalised probabilities make the threshold meaningful."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _sample(text: str) -> str:
    """Head plus a middle slice, so a boilerplate header cannot decide alone."""
    if len(text) <= HEAD_CHARS + MIDDLE_CHARS:
        return text
    mid = len(text) // 2
    start = max(HEAD_CHARS, mid - MIDDLE_CHARS // 2)
    return text[:HEAD_CHARS] + "\n" + text[start : start + MIDDLE_CHARS]


def detect_language(text: str) -> str:
    """Return an ISO 639-1 code such as "en" or "zh", or "und" when unsure."""
    sample = _sample(text)
    if sum(1 for ch in sample if ch.isalpha()) < MIN_LETTERS:
        return UNDETERMINED
    lang, prob = _identifier().classify(sample)
    if lang == UNDETERMINED or float(prob) < MIN_PROBABILITY:
        return UNDETERMINED
    code = str(lang)
    return _TO_ISO639_1.get(code, code)
