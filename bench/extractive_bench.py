"""Short extractive answers on XQuAD dev: how often the picked sentences hold the gold answer.

Each language's questions are asked of that language's paragraphs (the same-language knowledge
base), or with `--corpus en` of the English ones (judged by the English answer spans). By
default the first 24 paragraphs and 48 questions per language spread over them, to fit a small
CPU. The top passages come from the raw cosine, as the retriever would give them, and
`app.chat.extractive.SentencePicker` (the product's code) picks the sentences. Compared with the
naive answer, the first sentence of the best passage. A hit: one of the question's gold answer
spans is inside the picked text ("best": the best-scored sentence alone; "answer": the 1-3
sentences the product shows). "top1 passage": the whole best passage (the ceiling for p1).
Vectors are cached on disk, so a rerun costs little. Usage:
  nice -n 10 .venv/bin/python bench/extractive_bench.py [--corpus same|en] [--passages 1,3]
  [--weights 0,0.5,1] [--margins 0.03] [--json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"
LANGS = sorted(["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"])


class CachedEmbeddings(Embeddings):
    """The configured model's query and passage forms, remembered on disk between runs."""

    def __init__(self, embedder: Any, path: Path) -> None:
        self.embedder, self.path = embedder, path
        self.cache: dict[tuple[str, str], np.ndarray] = {}
        if path.exists():
            self.cache = pickle.loads(path.read_bytes())
        self.new = 0

    def _get(self, kind: str, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self.cache]
        if todo:
            encode = self.embedder.profile.query if kind == "q" else self.embedder.profile.passage
            vectors = self.embedder.encode([encode(t) for t in todo])
            self.cache.update({(kind, t): v for t, v in zip(todo, vectors, strict=True)})
            self.new += len(todo)
        return np.stack([self.cache[(kind, t)] for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._get("q", [text])[0].tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._get("p", list(texts)).tolist()

    def warm(self, kind: str, texts: list[str]) -> np.ndarray:
        return self._get(kind, texts)

    def save(self) -> None:
        if self.new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(pickle.dumps(self.cache))
            self.new = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kbchat-cache-extract/vectors.pkl"))
    parser.add_argument("--paragraphs", type=int, default=24, help="corpus: the first N paragraphs")
    parser.add_argument("--limit", type=int, default=48, help="questions per language (0: all)")
    parser.add_argument("--passages", default="3", help="how many top passages are read")
    parser.add_argument("--weights", default="0.5", help="passage_weight values to compare")
    parser.add_argument("--margins", default="0.03", help="margin values to compare")
    parser.add_argument(
        "--corpus", default="same", help="'same': each language's own paragraphs; 'en': English"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from app.chat.extractive import SentencePicker, split_sentences
    from app.chat.types import Source
    from app.embeddings.e5 import build_embeddings
    from app.settings import load_settings

    cached = CachedEmbeddings(build_embeddings(load_settings()), args.cache)
    queries = [json.loads(line) for line in (args.data / "queries.jsonl").open(encoding="utf-8")]
    variants = [
        (int(p), float(w), float(m))
        for p in args.passages.split(",")
        for w in args.weights.split(",")
        for m in args.margins.split(",")
    ]
    rows: dict[str, dict[str, Any]] = {}
    english = {q["xid"]: q["answers"] for q in queries if q["lang"] == "en"}
    for lang in LANGS:
        corpus = lang if args.corpus == "same" else args.corpus
        files = sorted((args.data / "corpus" / corpus).glob("*.txt"))[: args.paragraphs]
        ids = [f.stem for f in files]
        texts = [f.read_text(encoding="utf-8").strip() for f in files]
        passages = cached.warm("p", texts)
        qs = [q for q in queries if q["lang"] == lang and q["paragraph_id"] in ids]
        if args.limit and len(qs) > args.limit:  # spread over the paragraphs, not the first few
            qs = [qs[int(i * len(qs) / args.limit)] for i in range(args.limit)]
        qvec = cached.warm("q", [q["question"] for q in qs])
        cached.warm("p", [s for t in texts for s in split_sentences(t, corpus)])
        cached.save()
        counts: dict[str, list[float]] = {}
        started = time.perf_counter()
        for q, v in zip(qs, qvec, strict=True):
            sims = passages @ v
            top = [int(i) for i in np.argsort(-sims)[:3]]
            sources = [
                Source(n + 1, ids[i], ids[i], corpus, float(sims[i]), texts[i])
                for n, i in enumerate(top)
            ]

            gold = q["answers"] if corpus == lang else english[q["xid"]]

            def hit(text: str, gold: list[str] = gold) -> float:
                return float(any(a.strip() in text for a in gold))

            first = split_sentences(sources[0].text, corpus)[:1]
            found = {"first": hit(first[0] if first else ""), "top1 passage": hit(sources[0].text)}
            for p, w, m in variants:
                picker = SentencePicker(cached, passages=p, passage_weight=w, margin=m)
                picked = picker.pick(q["question"], sources)
                name = f"p{p} w{w} m{m}"
                best = SentencePicker(cached, passages=p, passage_weight=w, max_sentences=1)
                found[f"{name} best"] = hit(best.pick(q["question"], sources)[0].text)
                found[f"{name} answer"] = hit(" ".join(s.text for s in picked))
                found[f"{name} chars"] = len(picker.answer(q["question"], sources))
            for name, value in found.items():
                counts.setdefault(name, []).append(value)
            counts.setdefault("gold in top3", []).append(
                float(q["paragraph_id"] in [ids[i] for i in top])
            )
        rows[lang] = {k: round(float(np.mean(vals)), 3) for k, vals in counts.items()}
        rows[lang]["n"] = len(qs)
        rows[lang]["pick_ms"] = round((time.perf_counter() - started) * 1000 / max(1, len(qs)), 2)
        print(lang, rows[lang], file=sys.stderr, flush=True)
    keys = [k for k in next(iter(rows.values())) if k != "n"]
    rows["mean"] = {k: round(float(np.mean([r[k] for r in rows.values()])), 3) for k in keys}
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("lang " + " | ".join(keys))
    for lang, row in rows.items():
        print(f"{lang:5}" + " | ".join(str(row.get(k, "")) for k in keys))


if __name__ == "__main__":
    main()
