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
    "no": "nb",  # Norwegian: the written standard most texts use
    "nn": "nb",
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


def detect_language(text: str, candidates: frozenset[str] | None = None) -> str:
    """Return an ISO 639-1 code such as "en" or "zh", or "und" when unsure.

    With `candidates`, only those languages compete (variants folded in): a short question
    is then not split between German, Frisian and Luxembourgish.
    """
    sample = _sample(text)
    if _letters(sample) < MIN_LETTERS:
        return UNDETERMINED
    if candidates is not None:
        return _among(sample, candidates)
    lang, prob = _identifier().classify(sample)
    if lang == UNDETERMINED or float(prob) < MIN_PROBABILITY:
        return UNDETERMINED
    code = str(lang)
    return _TO_ISO639_1.get(code, code)


def _letters(text: str) -> int:
    """Letters, with a CJK/kana/hangul character worth two: it carries a word's information."""
    return sum((2 if ord(ch) >= 0x2E80 else 1) for ch in text if ch.isalpha())


def _among(sample: str, candidates: frozenset[str]) -> str:
    totals: dict[str, float] = {}
    for lang, prob in _identifier().rank(sample):
        code = _TO_ISO639_1.get(str(lang), str(lang))
        if code in candidates:
            totals[code] = totals.get(code, 0.0) + float(prob)
    mass = sum(totals.values())
    if not totals or mass <= 0:
        return UNDETERMINED
    best = max(totals, key=totals.__getitem__)
    return best if totals[best] / mass >= MIN_PROBABILITY else UNDETERMINED


def declared_language(tag: str) -> str | None:
    """The ISO 639-1 code of a language tag a file declares ("fr-FR" -> "fr"), if we know it.

    A page's own ``lang`` attribute is better evidence than a guess from a few boilerplate
    lines, but only when it names a language the classifier knows; "und", "x-foo" or a typo
    mean: detect instead.
    """
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    if not primary.isascii() or not primary.isalpha() or len(primary) not in (2, 3):
        return None
    code = _TO_ISO639_1.get(primary, primary)
    known = {_TO_ISO639_1.get(str(c), str(c)) for c in _identifier().nb_classes}
    return code if code in known and code != UNDETERMINED else None
