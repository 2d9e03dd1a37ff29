"""Evaluation scenarios over a parallel dataset, the raw model beside the product's ranking.

A dataset folder is laid out like `../shared/data/xquad-dev`: `corpus/<lang>/<id>.<ext>` (the
same id is the same document in every language it exists in) and `queries.jsonl` whose
`paragraph_id` names the id. From it a scenario builds a knowledge base folder, ingests it with
the real pipeline into a temporary data dir (embedded Chroma, whatever store the user set), and
ranks the questions twice through the same Retriever as `kbchat search`: with every ranking
correction off (`raw_settings`) and as configured. Scenarios:
- `mixed`: each document once, document i in language LANGS[i % n] (issue 8's multilingual KB);
- `pooled`: every document in every language;
- `same`: each language's questions on that language's corpus alone;
- `single:<lang>`: the whole corpus in one language, all questions (e.g. `single:en`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.embeddings.e5 import E5Embeddings, EmbeddingSpec
from app.evaluation import (
    EvalQuery,
    EvalReport,
    document_ranks,
    read_queries,
    report,
    sample_per_language,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from tokenizers import Tokenizer

    from app.settings import Settings

RAW_RANKING: dict[str, Any] = {
    "language_centring": False,
    "query_correction": "off",
    "query_correction_strength": 0.0,
    "lexical_weight": 0.0,
    "sentence_weight": 0.0,
}
"""Every ranking correction in RetrievalSettings with its "off" value: applied together they give
the raw model's cosine ranking. A new correction adds its field here (tests check that every
RetrievalSettings field is either here or in NOT_RANKING)."""
NOT_RANKING = frozenset(
    {"k", "min_score", "min_margin", "history_turns", "small_talk", "small_talk_min_score"}
)
"""RetrievalSettings fields that do not change the order of the ranking."""
SCENARIOS = ("mixed", "pooled", "same", "single:<lang>")


def raw_settings(settings: Settings) -> Settings:
    """The same settings with every ranking correction switched off."""
    retrieval = settings.retrieval.model_copy(update=RAW_RANKING)
    return settings.model_copy(update={"retrieval": retrieval})


@dataclass
class Comparison:
    """One scenario scored twice: the raw model and the configured ranking."""

    raw: EvalReport
    corrected: EvalReport

    def to_dict(self) -> dict[str, Any]:
        """The configured ranking's report (as `kbchat eval` always printed), plus `raw`."""
        return {**self.corrected.to_dict(), "raw": self.raw.to_dict()}


class CachedEmbeddings(E5Embeddings):
    """An E5Embeddings that remembers every vector, optionally on disk between runs.

    Keys are hashes of the exact text fed to the model (prefix included) and the model's
    identity, so queries and passages, scenarios and reruns share one cache safely.
    """

    def __init__(self, inner: E5Embeddings, cache_dir: Path | None = None) -> None:
        super().__init__(
            inner.resolved,
            inner.profile,
            device=inner.device or "auto",
            batch_size=inner.batch_size,
        )
        self.inner = inner
        self.vectors: dict[str, np.ndarray] = {}
        self.path = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            spec = inner.spec  # remote weights carry their own tag; int8 is cached apart
            ident = f"{spec.model_id}|{spec.weights}"
            ident += "" if spec.backend == "torch" else f"|{spec.backend}"
            ident += f"|{inner.vectors_version}" if inner.vectors_version else ""
            self.path = cache_dir / f"vectors-{_digest(ident)[:16]}.npz"
            if self.path.exists():
                with np.load(self.path) as stored:
                    self.vectors = dict(
                        zip(stored["keys"].tolist(), stored["vectors"], strict=True)
                    )
        self._saved = len(self.vectors)

    def _load(self) -> Any:
        return self.inner.model  # one copy of the weights

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer  # a remote embedder has a tokenizer but no local model

    @cached_property
    def spec(self) -> EmbeddingSpec:
        return self.inner.spec

    def encode(self, texts: list[str]) -> np.ndarray:
        keys = [_digest(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.vectors}
        if todo:
            fresh = self.inner.encode(list(todo.values()))
            self.vectors.update(zip(todo, fresh, strict=True))
        if not texts:
            return np.zeros((0, self.spec.dimension), np.float32)
        return np.stack([self.vectors[k] for k in keys])

    def prime_queries(self, questions: list[str], batch: int = 256) -> None:
        """Embed the questions in large batches now; the Retriever then asks one at a time."""
        texts = [self.profile.query(q) for q in dict.fromkeys(questions)]
        for start in range(0, len(texts), batch):
            self.encode(texts[start : start + batch])

    def save(self) -> None:
        """Write the cache, keeping what another run saved there meanwhile."""
        if self.path is None or len(self.vectors) == self._saved:
            return
        if self.path.exists():
            with np.load(self.path) as stored:
                keys, vectors = stored["keys"].tolist(), stored["vectors"]
                for key, vector in zip(keys, vectors, strict=True):
                    self.vectors.setdefault(key, vector)
        keys = np.array(list(self.vectors))
        part = self.path.with_suffix(".part.npz")
        np.savez(part, keys=keys, vectors=np.stack(list(self.vectors.values())))
        part.replace(self.path)  # a reader never sees half a file
        self._saved = len(self.vectors)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Dataset:
    """A folder with corpus/<lang>/<id>.<ext> and queries.jsonl (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        corpus = root / "corpus"
        if not corpus.is_dir() or not (root / "queries.jsonl").is_file():
            raise NotADirectoryError(
                f"{root} is not an evaluation dataset: it needs corpus/<lang>/<id>.<ext> "
                "files and a queries.jsonl"
            )
        self.files: dict[str, dict[str, Path]] = {
            lang.name: {f.stem: f for f in sorted(lang.iterdir()) if f.is_file()}
            for lang in sorted(corpus.iterdir())
            if lang.is_dir()
        }

    @property
    def languages(self) -> list[str]:
        return list(self.files)

    @property
    def ids(self) -> list[str]:
        return sorted({i for files in self.files.values() for i in files})

    @cached_property
    def queries(self) -> list[EvalQuery]:
        return read_queries(self.root / "queries.jsonl")


def build_single(data: Dataset, target: Path, lang: str) -> Path:
    """Every document of one language."""
    _known(data, lang)
    target.mkdir(parents=True)
    for f in data.files[lang].values():
        shutil.copy(f, target / f.name)
    return target


def build_mixed(data: Dataset, target: Path) -> Path:
    """Document i (ids sorted) only in language LANGS[i % n], the sorted corpus languages; a
    document missing there comes in the next language that has it."""
    target.mkdir(parents=True)
    langs = data.languages
    for i, doc in enumerate(data.ids):
        lang = next(
            langs[(i + j) % len(langs)]
            for j in range(len(langs))
            if doc in data.files[langs[(i + j) % len(langs)]]
        )
        source = data.files[lang][doc]
        shutil.copy(source, target / source.name)
    return target


def build_pooled(data: Dataset, target: Path) -> Path:
    """Every document in every language, one folder per language."""
    for lang in data.languages:
        build_single(data, target / lang, lang)
    return target


def build_one_among(
    data: Dataset, target: Path, base_lang: str, base_count: int, lang: str, doc: str
) -> Path:
    """The first `base_count` documents in `base_lang`, plus document `doc` in `lang` alone:
    does a rare language keep its rank (issue 8's 50 English documents and one German one)?"""
    target.mkdir(parents=True)
    for f in list(data.files[base_lang].values())[:base_count]:
        shutil.copy(f, target / f.name)
    shutil.copy(data.files[lang][doc], target)
    return target


@dataclass(frozen=True)
class Run:
    """One knowledge base to build and the questions scored on it."""

    name: str
    build: Callable[[Path], Path]
    questions: Callable[[EvalQuery], bool]


def plan(data: Dataset, scenario: str) -> list[Run]:
    """The knowledge bases one scenario needs (`same` needs one per language)."""
    if scenario == "mixed":
        return [Run("mixed", partial(build_mixed, data), _every)]
    if scenario == "pooled":
        return [Run("pooled", partial(build_pooled, data), _every)]
    if scenario.startswith("single:"):
        lang = scenario.removeprefix("single:")
        _known(data, lang)
        return [Run(f"single-{lang}", partial(_build_single, data, lang=lang), _every)]
    if scenario == "same":
        return [
            Run(f"same-{lang}", partial(_build_single, data, lang=lang), partial(_in, lang))
            for lang in data.languages
        ]
    raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")


def _every(query: EvalQuery) -> bool:
    return True


def _in(lang: str, query: EvalQuery) -> bool:
    return query.lang == lang


def _build_single(data: Dataset, target: Path, *, lang: str) -> Path:
    return build_single(data, target, lang)


def _known(data: Dataset, lang: str) -> None:
    if lang not in data.files:
        raise ValueError(f"no corpus/{lang} in {data.root} (languages: {data.languages})")


def compare_on_collection(
    settings: Settings,
    client: ClientAPI,
    name: str,
    embedder: E5Embeddings,
    queries: list[EvalQuery],
    k: int,
) -> Comparison:
    """Rank the queries on an existing collection, raw and as configured."""
    ranks = {
        variant: _ranks(s, client, name, embedder, queries, k)
        for variant, s in (("raw", raw_settings(settings)), ("corrected", settings))
    }
    return Comparison(report(queries, ranks["raw"], k), report(queries, ranks["corrected"], k))


def _ranks(
    settings: Settings,
    client: ClientAPI,
    name: str,
    embedder: E5Embeddings,
    queries: list[EvalQuery],
    k: int,
) -> list[int | None]:
    from app.search import ranking_retriever

    depth = max(4 * k, 20)  # chunks, so that k distinct documents remain
    retriever = ranking_retriever(
        settings, collection_name=name, k=depth, embedder=embedder, client=client
    )
    return document_ranks(lambda q: [s.source for s in retriever.retrieve(q)], queries, k)


def run_scenario(
    settings: Settings,
    data: Dataset,
    scenario: str,
    embedder: E5Embeddings,
    *,
    k: int = 10,
    languages: list[str] | None = None,
    per_language: int | None = None,
    workdir: Path | None = None,
) -> Comparison:
    """Build, ingest and score one scenario; `languages` keeps only those questions, and
    `per_language` at most that many per language (`sample_per_language`)."""
    from app.ingest import ingest_folder
    from app.store import make_client

    runs = plan(data, scenario)
    pool = data.queries
    if languages is not None:
        pool = [q for q in pool if q.lang in languages]
    if per_language is not None:
        pool = sample_per_language(pool, per_language)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local = settings.model_copy(
            update={
                "data_dir": Path(tmp) / "data",
                "chroma": settings.chroma.model_copy(update={"host": None}),
            }
        )
        client = make_client(local)
        scored: list[EvalQuery] = []
        ranks: dict[str, list[int | None]] = {"raw": [], "corrected": []}
        for run in runs:
            queries = [q for q in pool if run.questions(q)]
            if not queries:
                continue
            folder = run.build(Path(tmp) / "kb" / run.name)
            ingest_folder(local, folder, run.name, embedder=embedder, client=client)
            if isinstance(embedder, CachedEmbeddings):
                embedder.prime_queries([q.question for q in queries])
            for variant, s in (("raw", raw_settings(local)), ("corrected", local)):
                ranks[variant] += _ranks(s, client, run.name, embedder, queries, k)
            scored += queries
    if not scored:
        raise ValueError(f"no questions to score in {data.root} for {languages}")
    return Comparison(report(scored, ranks["raw"], k), report(scored, ranks["corrected"], k))
