"""The raw-model reference for `kbchat eval` on XQuAD: whole paragraphs, exact cosine top-k.

Encodes every paragraph of one corpus language with `passage: ` and every question with
`query: ` using plain sentence-transformers, ranks by exact cosine, and scores with the same
metric code as `kbchat eval`. Usage:
  .venv/bin/python bench/xquad_raw.py [--corpus en] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--corpus", default="en")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from sentence_transformers import SentenceTransformer

    from app.embeddings.resolve import resolve_model
    from app.evaluation import first_relevant_rank, read_queries, report
    from app.settings import load_settings

    settings = load_settings()
    model = resolve_model(settings.embedding.model, settings.models_dir)
    st = SentenceTransformer(str(model.path), device="cpu", local_files_only=True)
    files = sorted((args.data / "corpus" / args.corpus).glob("*.txt"))
    names = [f.name for f in files]
    passages = st.encode(
        [f"passage: {f.read_text(encoding='utf-8')}" for f in files],
        batch_size=8,
        normalize_embeddings=True,
    )
    queries = read_queries(args.data / "queries.jsonl")
    vectors = st.encode(
        [f"query: {q.question}" for q in queries], batch_size=64, normalize_embeddings=True
    )
    order = np.argsort(-(vectors @ passages.T), axis=1)[:, : args.k]
    ranked = [[names[i] for i in row] for row in order]
    ranks = [first_relevant_rank(q, r) for q, r in zip(queries, ranked, strict=True)]
    result = report(queries, ranks, args.k)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(f"raw {model.model_id} ({model.source}), corpus {args.corpus}, {len(files)} paragraphs")
    for lang, metrics in [*result.by_language.items(), ("all", result.overall)]:
        print(f"{lang:>4} " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
