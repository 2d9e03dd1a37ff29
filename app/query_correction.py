"""Query-side language correction from generic reference sentences (Yang et al. 2021).

A question's E5 vector carries its language as well as its meaning: every question in German
leans the same way, towards German passages. The mean of many unrelated German sentences (in the
query form the model sees at search time) estimates that lean; subtracting it ("mean") or the
language's top principal direction ("direction") from the question before scoring leaves more of
the meaning. The default ("shift") replaces the lean by the knowledge base's own: q - (mean of
the question's language - mean of the passages' languages), weighted by chunk counts. The
sentences are a Tatoeba sample shipped with the package (app/data, see NOTICE), never the user's
questions or documents, so the statistics are the same for every knowledge base.

They depend on the model: they are computed for the configured model, one language at a time when
a question (or, for "shift", a knowledge base) in it is first met, and cached under the data dir
in a folder named after the model's embedding spec (the same keys as app/language_stats.py),
which is also recorded inside each file and checked on load, so two models never share them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from app.language_stats import _spec_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from app.embeddings.e5 import EmbeddingSpec
    from app.settings import Settings

SAMPLE = Path(__file__).parent / "data" / "reference_sentences.json.gz"
Mode = Literal["shift", "mean", "direction"]


class QueryEncoder(Protocol):
    """The part of E5Embeddings this needs: its spec, its query form and batch encoding."""

    @property
    def spec(self) -> EmbeddingSpec: ...
    @property
    def profile(self) -> Any: ...
    def encode(self, texts: list[str]) -> np.ndarray: ...


@lru_cache(maxsize=1)
def shipped_sentences() -> dict[str, list[str]]:
    """ISO 639-1 code -> generic sentences (bench/build_reference_sample.py made the file)."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return {str(lang): [str(s) for s in rows] for lang, rows in data["sentences"].items()}


@dataclass(frozen=True)
class LanguageReference:
    """Mean query-form vector of a language's reference sentences, their top direction, and
    the mean of the same sentences in passage form (the prior of passage-side centring)."""

    mean: np.ndarray
    direction: np.ndarray
    passage_mean: np.ndarray

    @classmethod
    def compute(cls, vectors: np.ndarray, passages: np.ndarray) -> LanguageReference:
        vectors = np.asarray(vectors, dtype=np.float64)
        # Uncentred, as in Yang et al.'s language information removal: the top direction is where
        # the language's sentences sit, not how they spread around their mean.
        _, _, vt = np.linalg.svd(vectors, full_matrices=False)
        return cls(vectors.mean(axis=0), vt[0], np.asarray(passages, np.float64).mean(axis=0))

    def correct(self, vector: np.ndarray, mode: Mode, strength: float = 1.0) -> np.ndarray:
        """The corrected query, unit length (scores stay on a cosine-like scale)."""
        q = np.asarray(vector, dtype=np.float64)
        if mode == "mean":
            q = q - strength * self.mean
        else:
            q = q - strength * float(q @ self.direction) * self.direction
        norm = float(np.linalg.norm(q))
        return q / norm if norm > 0 else np.asarray(vector, dtype=np.float64)


def spec_folder(spec: EmbeddingSpec) -> str:
    """A folder name that changes with anything that changes the vectors."""
    text = json.dumps(_spec_of(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class QueryCorrection:
    """Corrects query vectors for their language; statistics made lazily, cached on disk."""

    def __init__(
        self,
        encoder: QueryEncoder,
        cache_dir: Path,
        *,
        mode: Mode = "shift",
        strength: float = 1.0,
        sentences: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.encoder, self.mode, self.strength = encoder, mode, strength
        self.cache_dir = cache_dir
        self._sentences = sentences
        self._known: dict[str, LanguageReference | None] = {}
        self._lock = threading.Lock()

    @property
    def sentences(self) -> Mapping[str, list[str]]:
        return self._sentences if self._sentences is not None else shipped_sentences()

    def correct(
        self, vector: np.ndarray, language: str | None, target: Mapping[str, int] | None = None
    ) -> np.ndarray:
        """The vector corrected for `language`; unchanged when the language has no reference.

        Mode "shift" moves the question from its language's mean to the mean of the knowledge
        base's languages (`target`: chunk count per language), so a question already in the
        passages' language is left alone and one in another language is carried over to them.
        """
        reference = self.reference(language) if language else None
        q = np.asarray(vector, dtype=np.float64)
        if reference is None:
            return q
        if self.mode != "shift":
            return reference.correct(q, self.mode, self.strength)
        goal = self.blend(target or {})
        if goal is None:
            return q
        shifted = q - self.strength * (reference.mean - goal)
        norm = float(np.linalg.norm(shifted))
        return shifted / norm if norm > 0 else q

    def blend(self, target: Mapping[str, int]) -> np.ndarray | None:
        """Count-weighted mean of the reference means of the languages in `target`."""
        total, acc = 0, None
        for lang, count in target.items():
            reference = self.reference(lang) if count > 0 else None
            if reference is None:
                continue  # "und" or a language without sentences: left out of the blend
            acc = count * reference.mean if acc is None else acc + count * reference.mean
            total += count
        return None if acc is None else acc / total

    def passage_offsets(self, counts: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Each knowledge-base language's lean on generic sentences in passage form: its mean
        minus the chunk-weighted mean over the knowledge base's languages (prior for centring).
        Languages without reference sentences get none (their centring keeps its old prior)."""
        known = {
            lang: ref.passage_mean
            for lang, n in counts.items()
            if n > 0 and (ref := self.reference(lang)) is not None
        }
        if not known:
            return {}
        total = sum(counts[lang] for lang in known)
        centre = sum(counts[lang] * vector for lang, vector in known.items()) / total
        return {lang: vector - centre for lang, vector in known.items()}

    def reference(self, language: str) -> LanguageReference | None:
        if language in self._known:
            return self._known[language]
        with self._lock:  # one computation per language, even under concurrent requests
            if language not in self._known:
                self._known[language] = self._load_or_compute(language)
        return self._known[language]

    def _load_or_compute(self, language: str) -> LanguageReference | None:
        rows = self.sentences.get(language)
        if not rows:
            return None
        spec = _spec_of(self.encoder.spec)
        path = self.cache_dir / spec_folder(self.encoder.spec) / f"{language}.npz"
        digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        if path.exists():
            try:
                with np.load(path) as cached:
                    if json.loads(str(cached["spec"])) == spec and str(cached["sample"]) == digest:
                        return LanguageReference(
                            cached["mean"], cached["direction"], cached["passage_mean"]
                        )
            except (OSError, ValueError, KeyError):
                pass  # unreadable: compute again and overwrite
        profile = self.encoder.profile
        both = self.encoder.encode(
            [profile.query(s) for s in rows] + [profile.passage(s) for s in rows]
        )
        reference = LanguageReference.compute(both[: len(rows)], both[len(rows) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temp file of its own: replicas sharing the data dir may write the same language at
        # the same moment, and one must not rename (or overwrite) the other's half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{language}-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    spec=json.dumps(spec, sort_keys=True),
                    sample=digest,
                    mean=reference.mean,
                    direction=reference.direction,
                    passage_mean=reference.passage_mean,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return reference


def prepare(settings: Settings, encoder: Any, languages: Iterable[str]) -> None:
    """Compute (or load) the statistics of `languages` now, so the first question does not wait.

    Called after a sync with the collection's languages; an encoder without query encoding (a
    test fake), or neither query correction nor centring on, does nothing.
    """
    mode = settings.retrieval.query_correction
    used = mode != "off" or settings.retrieval.language_centring  # centring's prior needs them
    if not used or not callable(getattr(encoder, "encode", None)):
        return
    correction = QueryCorrection(encoder, settings.data_dir / "language_reference")
    for language in languages:
        correction.reference(language)
