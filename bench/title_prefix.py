"""Does embedding "title > heading" with the passage help retrieval? (issue 8, clean chunks)

The knowledge base is `examples/kb` (seven languages, Markdown headings, an HTML title, plain
text), ingested with the real pipeline; the questions are the acceptance test's
(tests/data/examples_kb_questions.jsonl: one question per document in each of the seven
languages, plus the README's demo questions). Every chunk is embedded twice, as stored (the
passage alone) and as "<title> > <heading path>" on a line before the passage, and the
documents are ranked by raw cosine and by language centring (means of that variant's vectors,
leave-one-out with the product's shrinkage). XQuAD is not used: its paragraph files carry
neither titles nor article boundaries, so a title there would be invented.
Usage: .venv/bin/python bench/title_prefix.py [--cache-dir /tmp/kbchat-cache-eval] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = REPO / "tests" / "data" / "examples_kb_questions.jsonl"


def context_line(title: str, section: str) -> str:
    """The heading path already starts with the title when the document has one heading."""
    if section.startswith(title):
        return section
    return " > ".join(p for p in (title, section) if p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kb", type=Path, default=REPO / "examples" / "kb")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/kbchat-cache-eval"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from app.embeddings.e5 import build_embeddings
    from app.evaluation import EvalQuery, first_relevant_rank, read_queries, report
    from app.evaluation_scenarios import CachedEmbeddings
    from app.ingest import ingest_folder
    from app.language_stats import LanguageMeans
    from app.settings import load_settings
    from app.store import make_client

    settings = load_settings()
    embedder = CachedEmbeddings(build_embeddings(settings), args.cache_dir)
    queries: list[EvalQuery] = read_queries(QUESTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp)})
        client = make_client(local)
        ingest_folder(local, args.kb, "examples", embedder=embedder, client=client)
        got = client.get_collection("examples").get(
            include=["documents", "metadatas", "embeddings"]
        )
    texts = list(got["documents"] or [])
    metas: list[Any] = list(got["metadatas"] or [])
    sources = [str(m["source"]) for m in metas]
    languages = [str(m["language"]) for m in metas]
    variants = {
        "passage": np.asarray(got["embeddings"], dtype=np.float64),
        "title > heading + passage": embedder.encode_passages(
            [
                f"{context_line(str(m.get('title', '')), str(m.get('section', '')))}\n\n{t}"
                for t, m in zip(texts, metas, strict=True)
            ]
        ).astype(np.float64),
    }
    q = embedder.encode([embedder.profile.query(x.question) for x in queries]).astype(np.float64)
    embedder.save()
    results: dict[str, Any] = {}
    for name, vectors in variants.items():
        means = LanguageMeans.compute(vectors, languages, {})
        for ranking in ("raw", "centred"):
            ranks = []
            for query, vector in zip(queries, q, strict=True):
                raw = vectors @ vector
                score = raw - means.offsets(vector, languages, raw) if ranking == "centred" else raw
                order = list(dict.fromkeys(sources[i] for i in np.argsort(-score)))
                ranks.append(first_relevant_rank(query, order))
            results[f"{name} | {ranking}"] = {
                **report(queries, ranks, 10).to_dict(),
                "misses_at_1": [x.question for x, r in zip(queries, ranks, strict=True) if r != 1],
            }
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return
    print(f"{len(texts)} chunks, {len(queries)} questions; recall@1 / MRR@10 per question language")
    langs = sorted({x.lang for x in queries})
    print(f"{'variant':<38}" + "".join(f"{lang:>12}" for lang in [*langs, "all"]))
    for name, r in results.items():
        cells = defaultdict(str)
        for lang in langs:
            m = r["by_language"][lang]
            cells[lang] = f"{m['recall@1']:.2f}/{m['mrr@10']:.2f}"
        cells["all"] = f"{r['overall']['recall@1']:.3f}/{r['overall']['mrr@10']:.3f}"
        print(f"{name:<38}" + "".join(f"{cells[lang]:>12}" for lang in [*langs, "all"]))


if __name__ == "__main__":
    main()
