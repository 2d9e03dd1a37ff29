"""Language-neutral ranking on XQuAD dev: raw cosine vs language centring, through the pipeline.

Three scenarios, each ingested with the real pipeline (`ingest_folder`, the configured model) into
a temporary data dir and scored with `app.evaluation.evaluate`, questions in all 12 languages:
- mixed: paragraph i only in LANGS[i % 12], the multilingual knowledge base of issue 8;
- en: the English corpus;
- same: each language's questions on its own-language corpus;
- one: 50 English paragraphs plus one paragraph in another language, the questions (12
  languages) about that one paragraph; one run per language, rows by that paragraph's language.
Every vector (questions, passages, reference sentences) is cached on disk by model spec and
text (bench/vector_cache.py, --cache), so a rerun embeds only what is new. The per-language means
come from the collection's own chunks (`app.language_stats`), never from the questions; `--shrink`
lists the pseudo-counts to compare. `--variants` adds the other ranking levers, through the same
`app.chat.ranking.Ranker` the product uses: names joined by "+" from centred (shrink 1), mean or
direction (query correction, app/query_correction.py; "mean0.5": half strength) and lexN
(lexical bonus of weight N).
`--per-paragraph N` keeps the first N questions of each paragraph and language (0: all). Usage:
  .venv/bin/python bench/mixed_kb.py [--shrink 0,1,5] [--scenarios mixed,en,same,one] [--json]
      [--variants centred+mean,centred+lex0.02] [--per-paragraph 1] [--langs de,zh]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"
CACHE = Path("/tmp/kbchat-cache-rank2")
LANGS = sorted(["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"])


class CachedQueries:
    """The embedder's query side with a cache: every scenario asks for the same questions."""

    def __init__(self, embedder: Any) -> None:
        self.embedder, self.profile = embedder, embedder.profile
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, self.embedder.encode(todo), strict=True))
        return np.stack([self.cache[t] for t in texts])


def build_folder(data: Path, target: Path, languages: list[str] | None) -> Path:
    """languages None: the mixed KB; else every paragraph in the one language given.

    The builders are `kbchat eval --dataset`'s (app/evaluation_scenarios.py), so this benchmark
    and the command build the same knowledge bases."""
    from app.evaluation_scenarios import Dataset, build_mixed, build_single

    if languages is None:
        return build_mixed(Dataset(data), target)
    return build_single(Dataset(data), target, languages[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--shrink", default="1")
    parser.add_argument("--scenarios", default="mixed,en,same,one")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--variants", default="")
    parser.add_argument("--per-paragraph", type=int, default=0)
    parser.add_argument("--langs", default=",".join(LANGS), help="same: which corpora")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    shrinks = [float(s) for s in args.shrink.split(",") if s]
    scenarios = args.scenarios.split(",")
    variants = [v for v in args.variants.split(",") if v]

    sys.path.insert(0, str(REPO))
    from app.embeddings.e5 import build_embeddings
    from app.evaluation import evaluate, read_queries
    from app.evaluation_scenarios import Dataset, build_one_among
    from app.ingest import ingest_folder
    from app.language_stats import compute_for_collection
    from app.settings import load_settings
    from app.store import make_client, open_collection
    from bench.vector_cache import DiskCachedEmbedder

    settings = load_settings()
    embedder: Any = DiskCachedEmbedder(build_embeddings(settings), args.cache / "vectors.sqlite")
    queries = subsample(read_queries(args.data / "queries.jsonl"), args.per_paragraph)
    dataset = Dataset(args.data)
    cached = CachedQueries(embedder)
    rankers = {v: ranker_for(v, embedder, args.cache) for v in variants}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
        client = make_client(local)

        def run(name: str, folder: Path, qs: list[Any]) -> dict[str, Any]:
            ingest_folder(local, folder, name, embedder=embedder, client=client)
            collection = open_collection(client, name, embedder.spec)
            out = {"raw": evaluate(cached, collection, qs, k=args.k).to_dict()}  # type: ignore[arg-type]
            for s in shrinks:
                means = compute_for_collection(collection, embedder.spec, shrink=s)
                out[f"centred k={s:g}"] = evaluate(
                    cached,  # type: ignore[arg-type]
                    collection,
                    qs,
                    k=args.k,
                    means=means,
                ).to_dict()
            for v, (ranker, centred) in rankers.items():
                means = compute_for_collection(collection, embedder.spec) if centred else None
                out[v] = evaluate(
                    cached, collection, qs, k=args.k, means=means, ranker=ranker
                ).to_dict()  # type: ignore[arg-type]
            return out

        root = Path(tmp) / "kb"
        if "mixed" in scenarios:
            results["mixed"] = run("mixed", build_folder(args.data, root / "mixed", None), queries)
            show("mixed", results["mixed"], args.k, args.json)
        if "en" in scenarios or "same" in scenarios:
            results["en"] = run("corpus-en", build_folder(args.data, root / "en", ["en"]), queries)
            show("en", results["en"], args.k, args.json)
        if "one" in scenarios:
            trials: dict[str, Any] = {}
            for i, lang in enumerate(x for x in LANGS if x != "en"):
                target = f"xq{60 + 5 * i:03d}"
                folder = build_one_among(dataset, root / f"one-{lang}", "en", 50, lang, target)
                qs = [q for q in queries if q.paragraph_id == target]
                trials[lang] = run(f"one-{lang}", folder, qs)
            results["one"] = combine(trials)
            show("one", results["one"], args.k, args.json)
        if "same" in scenarios:
            per_lang: dict[str, Any] = {}
            for lang in args.langs.split(","):
                qs = [q for q in queries if q.lang == lang]
                folder = build_folder(args.data, root / f"same-{lang}", [lang])
                per_lang[lang] = run(f"same-{lang}", folder, qs)
            results["same"] = combine(per_lang)
            show("same", results["same"], args.k, args.json)
            if "en" not in scenarios:
                del results["en"]
    if args.json:
        print(json.dumps(results, indent=2))


def subsample(queries: list[Any], per_paragraph: int) -> list[Any]:
    """The first `per_paragraph` questions of each (paragraph, language); 0 keeps them all."""
    if per_paragraph <= 0:
        return queries
    seen: dict[tuple[str, str], int] = {}
    out = []
    for q in queries:
        key = (q.paragraph_id, q.lang)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= per_paragraph:
            out.append(q)
    return out


def ranker_for(variant: str, embedder: Any, cache: Path) -> tuple[Any, bool]:
    """A variant name ("centred+mean+lex0.02") -> (the Ranker, whether centring is on)."""
    from app.chat.ranking import Ranker
    from app.lexical import LexicalBonus
    from app.query_correction import QueryCorrection

    parts = variant.split("+")
    correction = lexical = None
    for part in parts:
        if part.startswith(("mean", "direction", "shift")):
            mode = next(m for m in ("mean", "direction", "shift") if part.startswith(m))
            strength = float(part[len(mode) :] or 1)
            correction = QueryCorrection(
                embedder,
                cache / "reference",
                mode=mode,  # type: ignore[arg-type]
                strength=strength,
            )
        elif part.startswith("lex"):
            lexical = LexicalBonus(embedder.tokenizer, float(part[3:]))
        elif part != "centred":
            raise SystemExit(f"unknown lever {part!r} in variant {variant!r}")
    return Ranker(correction, lexical), "centred" in parts


def show(scenario: str, variants: dict[str, Any], k: int, quiet: bool) -> None:
    """One table per scenario as soon as it is done: recall@1 and MRR@k per question language."""
    if quiet:
        return
    print(f"\n== {scenario} (k={k}) ==")
    names = list(variants)
    langs = list(variants["raw"]["by_language"])
    print(f"{'lang':>5} " + " ".join(f"{n:>21}" for n in names))
    print(f"{'':>5} " + " ".join(f"{'R@1':>10} {f'MRR@{k}':>10}" for _ in names))
    for lang in [*langs, "all"]:
        cells = []
        for n in names:
            m = variants[n]["overall"] if lang == "all" else variants[n]["by_language"][lang]
            cells.append(f"{m['recall@1']:>10.3f} {m[f'mrr@{k}']:>10.3f}")
        print(f"{lang:>5} " + " ".join(cells), flush=True)


def combine(per_lang: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Same-language runs: one report per variant, languages side by side, mean over queries."""
    out: dict[str, Any] = {}
    for variant in next(iter(per_lang.values())):
        by_language = {lang: r[variant]["overall"] for lang, r in per_lang.items()}
        sizes = {lang: r[variant]["queries"] for lang, r in per_lang.items()}
        total = sum(sizes.values())
        overall = {
            m: round(sum(by_language[lang][m] * sizes[lang] for lang in by_language) / total, 4)
            for m in next(iter(by_language.values()))
        }
        out[variant] = {"queries": total, "overall": overall, "by_language": by_language}
    return out


if __name__ == "__main__":
    main()
