"""Calibrate the relevance cut-off of an E5 model on XQuAD (answerable vs unanswerable questions).

E5 cosine scores crowd into ~0.7-1.0, so a cut-off is only meaningful per model. Method: index
the paragraphs of the first half of the articles only; questions about those are answerable,
questions about the other half have no answer in the index. For every question (12 languages)
take the best passage score. The cut-off is the highest threshold that still keeps the gold
passage of at least KEEP (default 99%) of the answerable questions whose gold passage is in the
top k; the script also reports how many unanswerable questions it then turns away.
`--sentences`: score each passage as the retriever's relevance rule does with sentence vectors,
the mean of its cosine and its best sentence's (ingestion/sentences.py), and calibrate that.
Usage: .venv/bin/python bench/calibrate_cutoff.py [--corpus en] [--keep 0.99] [--sentences]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--corpus", default="en")
    parser.add_argument("--keep", type=float, default=0.99)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--sentences", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from sentence_transformers import SentenceTransformer

    from app.embeddings.profiles import make_profile
    from app.embeddings.resolve import resolve_model
    from app.evaluation import read_queries
    from app.settings import load_settings

    settings = load_settings()
    model = resolve_model(settings.embedding.model, settings.models_dir)
    profile = make_profile(model.model_id, settings.prompts_dir, settings.embedding.prefix_scheme)
    st = SentenceTransformer(str(model.path), device="cpu", local_files_only=True)
    files = sorted((args.data / "corpus" / args.corpus).glob("*.txt"))
    indexed = files[: len(files) // 2]
    names = [f.stem for f in indexed]
    passages = st.encode(
        [profile.passage(f.read_text(encoding="utf-8")) for f in indexed],
        batch_size=8,
        normalize_embeddings=True,
    )
    queries = read_queries(args.data / "queries.jsonl")
    vectors = st.encode(
        [profile.query(q.question) for q in queries], batch_size=64, normalize_embeddings=True
    )
    scores = vectors @ passages.T
    if args.sentences:
        scores = (scores + best_sentence(st, profile, indexed, args.corpus, vectors)) / 2
    answerable = np.array([q.paragraph_id in names for q in queries])
    gold = np.array(
        [names.index(q.paragraph_id) if a else -1 for q, a in zip(queries, answerable, strict=True)]
    )
    top = np.argsort(-scores, axis=1)[:, : args.k]
    found = np.array([a and g in row for a, g, row in zip(answerable, gold, top, strict=True)])
    gold_score = np.array(
        [scores[i, g] if f else np.nan for i, (g, f) in enumerate(zip(gold, found, strict=True))]
    )
    best_unanswerable = scores[~answerable].max(axis=1)
    kept = gold_score[found]
    cutoff = float(np.floor(np.quantile(kept, 1 - args.keep) * 1000) / 1000)
    rejected = float((best_unanswerable < cutoff).mean())
    print(f"model {model.model_id} ({model.weights}), {len(indexed)} indexed paragraphs")
    print(f"answerable questions with gold in top {args.k}: {found.sum()} of {answerable.sum()}")
    for name, values in (
        ("gold passage score (answerable)", kept),
        ("best score (unanswerable)", best_unanswerable),
    ):
        q = np.quantile(values, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95])
        print(
            f"{name:34s} p1 {q[0]:.3f} p5 {q[1]:.3f} p25 {q[2]:.3f} p50 {q[3]:.3f} "
            f"p75 {q[4]:.3f} p95 {q[5]:.3f}"
        )
    print(
        f"cut-off keeping {args.keep:.0%} of gold passages: {cutoff:.3f}; "
        f"it turns away {rejected:.1%} of unanswerable questions"
    )
    for lang in sorted({q.lang for q in queries}):
        mask = np.array([q.lang == lang for q in queries])
        keep_rate = float((gold_score[found & mask] >= cutoff).mean())
        reject_rate = float((scores[mask & ~answerable].max(axis=1) < cutoff).mean())
        print(f"  {lang}: keeps {keep_rate:.1%} of gold, turns away {reject_rate:.1%} unanswerable")


def best_sentence(st: object, profile: object, files: list[Path], language: str, q: np.ndarray):  # type: ignore[no-untyped-def]
    """Each question's best sentence cosine in each passage (the passage's own without any)."""
    from ingestion.sentences import sentence_texts, token_counter

    tokens = token_counter(st.tokenizer.backend_tokenizer)  # type: ignore[attr-defined]
    best = np.empty((len(q), len(files)))
    for j, f in enumerate(files):
        text = f.read_text(encoding="utf-8")
        sentences = sentence_texts(text, language, tokens) or [text]
        vectors = st.encode(  # type: ignore[attr-defined]
            [profile.passage(s) for s in sentences],  # type: ignore[attr-defined]
            batch_size=16,
            normalize_embeddings=True,
        )
        best[:, j] = (q @ vectors.T).max(axis=1)
    return best


if __name__ == "__main__":
    main()
