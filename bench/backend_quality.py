"""The int8 encoder's quality bar (issue 12) on XQuAD dev, through the product's ranking.

For the mixed-language knowledge base and the English corpus (questions in all 12 languages),
recall@1 raw and as kbchat ranks, with four encoders: fp32 torch, int8 (--int8: ct2-int8, the
default on a CPU, or onnx-int8), and the two mixes a
collection can hold after a backend change (passages by one, queries by the other). Then the
cosine between int8 and fp32 vectors of the same texts: the probe sentences of
tests/data/probe.json as queries and passages, and every question. Vectors are cached under
--cache (by text and backend), so a rerun embeds nothing new. Usage:
  .venv/bin/python bench/backend_quality.py [--per-language N] [--scenarios mixed,single:en]
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"

from app.embeddings.e5 import E5Embeddings, EmbeddingSpec  # noqa: E402


class Routed(E5Embeddings):
    """Passages by one encoder, queries by the other: a collection after a backend change."""

    def __init__(self, passages: Any, queries: Any) -> None:
        super().__init__(passages.resolved, passages.profile)
        self.passages, self.queries = passages, queries

    def _load(self) -> Any:
        return self.passages.model

    @property
    def tokenizer(self) -> Any:
        return self.passages.tokenizer

    @cached_property
    def spec(self) -> EmbeddingSpec:
        p, q = self.passages.spec, self.queries.spec
        return EmbeddingSpec(
            p.model_id,
            p.weights,
            p.scheme,
            p.dimension,
            p.max_tokens,
            backend=f"passages-{p.backend}+queries-{q.backend}",
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        prefix = self.profile.passage_prefix
        out = np.zeros((len(texts), self.spec.dimension), np.float32)
        for encoder, wanted in ((self.passages, True), (self.queries, False)):
            idx = [i for i, t in enumerate(texts) if t.startswith(prefix) == wanted]
            if idx:
                out[idx] = encoder.encode([texts[i] for i in idx])
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--scenarios", default="mixed,single:en")
    parser.add_argument("--per-language", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kbchat-eval-cache"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--int8", default="ct2-int8", choices=["ct2-int8", "onnx-int8"])
    parser.add_argument("--encoders", default="fp32,int8,fp32+int8,int8+fp32")
    args = parser.parse_args()

    from app.embeddings.e5 import build_embeddings
    from app.evaluation_scenarios import CachedEmbeddings, Dataset, run_scenario
    from app.settings import load_settings

    settings = load_settings(data_dir=REPO / "data")
    emb = settings.embedding
    fp32 = CachedEmbeddings(
        build_embeddings(
            settings.model_copy(update={"embedding": emb.model_copy(update={"backend": "torch"})})
        ),
        args.cache,
    )
    int8 = CachedEmbeddings(
        build_embeddings(
            settings.model_copy(update={"embedding": emb.model_copy(update={"backend": args.int8})})
        ),
        args.cache,
    )
    onnx = CachedEmbeddings(
        build_embeddings(
            settings.model_copy(
                update={"embedding": emb.model_copy(update={"backend": "onnx-int8"})}
            )
        ),
        args.cache,
    )
    every = {
        "fp32": fp32,
        "int8": int8,
        "fp32+int8": Routed(fp32, int8),  # passages by the first, queries by the second
        "int8+fp32": Routed(int8, fp32),
        "onnx+int8": Routed(onnx, int8),  # a collection the ONNX copy embedded, new queries
    }
    encoders = {name: every[name] for name in args.encoders.split(",")}
    data = Dataset(args.data)
    results: dict[str, Any] = {}
    for scenario in args.scenarios.split(","):
        for name, encoder in encoders.items():
            comparison = run_scenario(
                settings, data, scenario, encoder, per_language=args.per_language
            )
            fp32.save()
            int8.save()
            onnx.save()
            row = {"raw": comparison.raw.to_dict(), "corrected": comparison.corrected.to_dict()}
            results[f"{scenario} / {name}"] = row
            raw, ranked = row["raw"], row["corrected"]
            print(
                f"{scenario:10s} {name:10s} recall@1 raw {raw['overall']['recall@1']:.4f}"
                f"  kbchat {ranked['overall']['recall@1']:.4f}  "
                + " ".join(
                    f"{lang} {v['recall@1']:.3f}"
                    for lang, v in sorted(ranked["by_language"].items())
                ),
                flush=True,
            )
    probe = json.loads((REPO / "tests" / "data" / "probe.json").read_text(encoding="utf-8"))
    questions = sorted({q.question for q in data.queries})
    for label, texts in (
        ("probe, queries", [fp32.profile.query(t) for t in probe]),
        ("probe, passages", [fp32.profile.passage(t) for t in probe]),
        ("every dev question", [fp32.profile.query(t) for t in questions]),
    ):
        cos = (fp32.encode(texts) * int8.encode(texts)).sum(axis=1)
        results[f"cosine {label}"] = {
            "min": float(cos.min()),
            "p01": float(np.quantile(cos, 0.01)),
            "mean": float(cos.mean()),
        }
        print(
            f"cosine int8 vs fp32, {label} ({len(texts)}): min {cos.min():.4f} "
            f"1st percentile {np.quantile(cos, 0.01):.4f} mean {cos.mean():.4f}",
            flush=True,
        )
    fp32.save()
    int8.save()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
