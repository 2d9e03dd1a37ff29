"""Per-language mean passage vectors of a collection, for language-neutral ranking.

E5 vectors carry a language component: a question scores every passage in its own language a
little higher, whatever it says (docs/language_centring.md). Subtracting from each passage the
mean of the passages in its language removes that component; since q·(d - m) = q·d - q·m it is
done at query time on an over-fetched candidate set, so Chroma keeps the vectors as embedded.

The means are computed from the collection's own stored vectors after every sync that changed it
(and lazily for a collection that has none), and kept as JSON in the collection's metadata, so
they travel with it to a Chroma server. They record the embedding configuration they came from
and are ignored under any other.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from app.embeddings.e5 import EmbeddingSpec

META_KEY = "kbchat_language_means"
SHRINK = 1.0
"""Pseudo-count pulling a language's mean towards the collection's mean, so that a language with
two or three chunks is not corrected by a noisy mean. Chosen on the XQuAD dev mixed knowledge
base (bench/mixed_kb.py --shrink): 0 and 1 are within 0.003 recall@1 there, 5 loses 0.04;
see docs/language_centring.md."""
PRIOR_WEIGHT = 5.0
"""Pseudo-count of the reference prior (m_all + the language's offset on generic sentences) when
one is given. Measured on XQuAD dev (1,440 questions, mixed KB) and examples/kb (59 questions):
k = 1/3/5/10 gave 0.727/0.730/0.723/0.710 and 0.458/0.593/0.610/0.627 without query correction,
0.731/0.734/0.734/0.723 and 0.475/0.576/0.593/0.610 with it; 5 keeps both
(docs/language_centring.md)."""
_SPEC_KEYS = ("kbchat_model", "kbchat_weights", "kbchat_prefix", "kbchat_dim")
_PAGE = 1000


def _spec_of(spec: EmbeddingSpec) -> dict[str, Any]:
    meta = spec.as_metadata()
    return {k: meta[k] for k in _SPEC_KEYS}


@dataclass(frozen=True)
class LanguageMeans:
    """Mean vector and chunk count per language, and the mean of all chunks, for one spec.

    A passage is corrected by the mean of the *other* chunks of its language (leave one out),
    shrunk towards the overall mean: m'(d) = (n*m_l - d + k*m_all) / (n - 1 + k). Without leaving
    it out, a language with one chunk has that chunk as its mean and centring erases its whole
    score (measured: one German paragraph among 50 English ones went from recall@1 0.905 to 0
    with plain means, 0.82 even with k=5; leave-one-out keeps 0.90).
    """

    spec: Mapping[str, Any]
    counts: Mapping[str, int]
    means: Mapping[str, np.ndarray]  # plain per-language means; shrinkage is applied in offsets
    overall: np.ndarray
    shrink: float = SHRINK

    @classmethod
    def compute(
        cls,
        vectors: np.ndarray,
        languages: list[str],
        spec: Mapping[str, Any],
        *,
        shrink: float = SHRINK,
    ) -> LanguageMeans:
        vectors = np.asarray(vectors, dtype=np.float64)
        if len(vectors) != len(languages) or not len(vectors):
            raise ValueError("need one language per vector, and at least one vector")
        overall = vectors.mean(axis=0)
        labels = np.asarray(languages)
        means, counts = {}, {}
        for lang in sorted(set(languages)):
            rows = vectors[labels == lang]
            counts[lang] = len(rows)
            means[lang] = rows.mean(axis=0)
        return cls(dict(spec), counts, means, overall, shrink)

    def offsets(
        self,
        query: np.ndarray,
        languages: Iterable[str],
        raw: Iterable[float],
        prior: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """q·(m'(d) - m_all) for each candidate (its language, its raw cosine q·d): subtract it.

        Only q·m_l and q·d are needed, so this is exact without the passage vectors. Taking the
        overall mean back keeps corrected scores on the raw scale without changing the ranking.
        A language the means do not know (added since) is not corrected.

        `prior`: per-language offsets measured on generic reference sentences
        (`app.query_correction.QueryCorrection.passage_offsets`). With it, a language's mean is
        shrunk towards m_all + prior[lang] with PRIOR_WEIGHT pseudo-chunks instead of towards
        m_all, so a language with a handful of chunks (whose mean is mostly its topic, not its
        language) is still corrected for its language.
        """
        q = np.asarray(query, dtype=np.float64)
        base = float(q @ self.overall)
        dot = {lang: float(q @ m) for lang, m in self.means.items()}
        lean = {lang: float(q @ v) for lang, v in (prior or {}).items()}
        k = self.shrink if prior is None else PRIOR_WEIGHT
        out = []
        for lang, qd in zip(languages, raw, strict=True):
            n = self.counts.get(lang, 0)
            denominator = n - 1 + k
            if lang not in dot or denominator <= 0:
                out.append(0.0)
                continue
            towards = base + lean.get(lang, 0.0)
            out.append((n * dot[lang] - float(qd) + k * towards) / denominator - base)
        return np.array(out)

    def to_json(self) -> str:
        def pack(v: np.ndarray) -> str:
            return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")

        return json.dumps(
            {
                "spec": dict(self.spec),
                "counts": dict(self.counts),
                "overall": pack(self.overall),
                "means": {lang: pack(m) for lang, m in self.means.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LanguageMeans:
        raw = json.loads(text)

        def unpack(s: str) -> np.ndarray:
            return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float64)

        return cls(
            raw["spec"],
            {k: int(v) for k, v in raw["counts"].items()},
            {lang: unpack(s) for lang, s in raw["means"].items()},
            unpack(raw["overall"]),
        )  # the shrinkage is code, not data: a new constant applies to old collections too


def compute_for_collection(
    collection: Collection, spec: EmbeddingSpec, *, shrink: float = SHRINK
) -> LanguageMeans | None:
    """Means over every stored chunk vector (None for an empty collection)."""
    vectors: list[np.ndarray] = []
    languages: list[str] = []
    offset = 0
    while True:
        got = collection.get(include=["embeddings", "metadatas"], limit=_PAGE, offset=offset)
        embeddings = got["embeddings"]
        if embeddings is None or not len(embeddings):
            break
        vectors.append(np.asarray(embeddings, dtype=np.float64))
        languages += [str((m or {}).get("language", "und")) for m in got["metadatas"] or []]
        offset += len(embeddings)
    if not vectors:
        return None
    return LanguageMeans.compute(np.vstack(vectors), languages, _spec_of(spec), shrink=shrink)


_RECORDED: dict[str, int] = {}
"""How many times this process recorded each collection's means: a CollectionMeans reads its
collection again after a sync in its own process at once, after one elsewhere within max_age."""


def refresh(collection: Collection, spec: EmbeddingSpec) -> LanguageMeans | None:
    """Recompute the means and record them in the collection's metadata."""
    from app.store import update_metadata

    means = compute_for_collection(collection, spec)
    update_metadata(collection, **{META_KEY: means.to_json() if means else ""})
    _RECORDED[collection.name] = _RECORDED.get(collection.name, 0) + 1
    return means


def stored(collection: Collection, spec: EmbeddingSpec) -> LanguageMeans | None:
    """The recorded means if they were made with this embedding configuration."""
    text = (collection.metadata or {}).get(META_KEY)
    if not isinstance(text, str) or not text:
        return None
    try:
        means = LanguageMeans.from_json(text)
    except (ValueError, KeyError, TypeError):
        return None
    return means if dict(means.spec) == _spec_of(spec) else None


class CollectionMeans:
    """The current means of one collection, re-read from its metadata at most every `max_age`
    seconds.

    A long-lived chain (the server) sees the means a later sync recorded (within `max_age`);
    decoding happens only when they changed. A collection that has none yet (made before this
    feature) gets them now. Looking the collection up is a store request that holds the GIL
    (about 1 ms under load: a tenth of a busy server's GIL time, docs/performance.md); means a
    second old rank as well as new ones.
    """

    def __init__(
        self,
        client: ClientAPI,
        name: str,
        spec: EmbeddingSpec,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.name, self.spec = client, name, spec
        self.max_age, self.clock = max_age, clock
        self._cached: tuple[str, LanguageMeans | None] = ("", None)  # one attribute: thread-safe
        self._looked: tuple[float, int, Collection | None] = (0.0, 0, None)  # when, _RECORDED

    def current(self) -> LanguageMeans | None:
        now, recorded = self.clock(), _RECORDED.get(self.name, 0)
        when, seen, collection = self._looked
        if collection is None or now - when >= self.max_age or recorded != seen:
            collection = self.client.get_collection(self.name, embedding_function=None)
            self._looked = (now, recorded, collection)
        text = (collection.metadata or {}).get(META_KEY)
        if text is None:
            return refresh(collection, self.spec)  # which makes the next call look again
        if text != self._cached[0]:
            means = stored(collection, self.spec)
            if means is None and text:  # made with another configuration
                return refresh(collection, self.spec)
            self._cached = (text, means)
        return self._cached[1]
