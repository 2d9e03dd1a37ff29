"""Query translation with a real LLM on the mixed-language XQuAD dev knowledge base (issue 8).

The knowledge base is bench/mixed_kb.py's "mixed" one (paragraph i only in LANGS[i % 12]),
ingested once with the real pipeline into --cache. A seeded sample of --per-language questions
(the same XQuAD questions in each of the 12 languages, so languages are comparable) is asked as a
first turn: the chain's own prompt (prompts/condense_translate.txt), target languages
(app.chat.translate.main_languages over the collection's chunk counts, the question's own
language left out), parser and fusion (app.chat.fusion). Each LLM reply is cached on disk
(keyed by the prompt), so a rerun costs no LLM time; questions run round-robin over languages, so
a run stopped early still has every language.

Reported per question language: recall@1 of the plain question (what kbchat does without
translation), of the fused variants ("max" and "sum"), and of the question plus its English
translation only; the LLM seconds (mean) and extra retrieval time (median) per question; and
what the model did (format breaks, missing languages). Needs an OpenAI-compatible server, e.g.
llama.cpp:
  OPENAI_BASE_URL=http://127.0.0.1:8077/v1 nice -n 10 .venv/bin/python bench/query_translation.py \
      --per-language 10 [--languages 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.mixed_kb import LANGS, XQUAD, build_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kbchat-cache-llm"))
    parser.add_argument("--per-language", type=int, default=10)
    parser.add_argument("--languages", type=int, default=3, help="llm.translate_languages")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write every row and the summary here")
    args = parser.parse_args()

    from langchain_core.prompts import PromptTemplate

    from app.chat.chain import question_language
    from app.chat.factory import build_chat_chain
    from app.chat.fusion import fuse
    from app.chat.llm import build_chat_model
    from app.chat.prompts import load_prompts
    from app.chat.translate import main_languages, parse_variants, prompt_inputs, queries
    from app.embeddings.e5 import build_embeddings
    from app.ingest import ingest_folder
    from app.language_stats import CollectionMeans
    from app.settings import load_settings
    from app.store import make_client

    settings = load_settings(data_dir=args.cache / "data")
    settings.llm.temperature = 0.0  # reproducible replies; the product default is 0.1
    settings.llm.max_tokens = 200  # four short lines; a looping model is cut
    llm = build_chat_model(settings)
    if llm is None:
        sys.exit("set OPENAI_BASE_URL (and OPENAI_API_KEY if needed) to an OpenAI-compatible LLM")
    embedder = build_embeddings(settings)
    client = make_client(settings)
    if "mixed" not in [c.name for c in client.list_collections()]:
        folder = build_folder(args.data, args.cache / "kb-mixed", None)
        ingest_folder(settings, folder, "mixed", embedder=embedder, client=client)
    chain = build_chat_chain(settings, "mixed", embedder=embedder, client=client, llm=None)
    retriever = chain.retriever
    prompts = load_prompts(settings.prompts_dir)
    template = PromptTemplate.from_template(prompts.condense_translate)
    names = {code: entry["name_en"] for code, entry in prompts.messages.items()}
    means = CollectionMeans(client, "mixed", embedder.spec).current()
    assert means is not None
    kb_languages = main_languages(means.counts, limit=args.languages)
    print(f"chunks per language: {dict(means.counts)}", flush=True)
    print(f"knowledge base languages asked for: {kb_languages}", flush=True)

    replies_path = args.cache / "llm_replies.jsonl"
    replies: dict[str, dict[str, Any]] = {}
    if replies_path.exists():
        for line in replies_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            replies[row["key"]] = row

    by_xid: dict[str, dict[str, Any]] = defaultdict(dict)
    for line in (args.data / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_xid[row["xid"]][row["lang"]] = SimpleNamespace(**row)
    xids = sorted(x for x, langs in by_xid.items() if set(LANGS) <= set(langs))
    order = random.Random(args.seed).sample(xids, len(xids))  # a larger run extends a smaller
    sample = order[: args.per_language]

    rows: list[dict[str, Any]] = []
    for n, xid in enumerate(sample, 1):
        for lang in LANGS:
            q = by_xid[xid][lang]
            detected = question_language(q.question, [], prompts.languages)
            targets = [code for code in kb_languages if code != detected]
            prompt = template.format(**prompt_inputs(q.question, "", targets, names))
            key = hashlib.sha256(f"{settings.llm.model}\n{prompt}".encode()).hexdigest()
            if key not in replies:
                started = time.perf_counter()
                try:
                    text = str(llm.invoke(prompt).content)
                except Exception as exc:  # the chain searches the plain question then; so do we
                    print(f"LLM failed for {q.qid}: {type(exc).__name__}", flush=True)
                    text = ""
                seconds = time.perf_counter() - started
                replies[key] = {"key": key, "reply": text, "seconds": round(seconds, 2)}
                with replies_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(replies[key], ensure_ascii=False) + "\n")
            reply = replies[key]
            variants = parse_variants(reply["reply"], targets, names)
            standalone = variants.standalone or q.question
            searches = queries(standalone, variants)
            started = time.perf_counter()
            plain = retriever.retrieve(q.question)
            plain_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            each = [retriever.retrieve(s) for s in searches]
            fused_ms = (time.perf_counter() - started) * 1000
            english = [each[0]] + [
                r
                for s, r in zip(searches[1:], each[1:], strict=True)
                if s == variants.translations.get("en")
            ]
            target = q.paragraph_id

            def hit(sources: list[Any], target: str = target) -> int:
                return int(bool(sources) and Path(sources[0].source).stem == target)

            rows.append(
                {
                    "qid": q.qid,
                    "lang": lang,
                    "detected": detected,
                    "targets": targets,
                    "question": q.question,
                    "reply": reply["reply"],
                    "llm_s": reply["seconds"],
                    "extra_retrieval_ms": round(fused_ms - plain_ms, 1),
                    "standalone_found": variants.standalone is not None,
                    "standalone_changed": standalone.strip() != q.question.strip(),
                    "translated": sorted(variants.translations),
                    "plain": hit(plain),
                    "max": hit(fuse(each, retriever.k, "max")),
                    "sum": hit(fuse(each, retriever.k, "sum")),
                    "plus_en": hit(fuse(english, retriever.k, "max")),
                }
            )
        print(f"{n}/{len(sample)} question ids done ({len(rows)} questions)", flush=True)
    summary = report(rows)
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False, indent=1),
            encoding="utf-8",
        )


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """recall@1 per question language and variant, LLM behaviour and cost."""
    variants = ["plain", "max", "sum", "plus_en"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["lang"]].append(row)
    groups["all"] = rows
    summary: dict[str, Any] = {}
    print(
        f"\n{'lang':>5} {'n':>4} "
        + " ".join(f"{v:>8}" for v in variants)
        + f" {'llm s':>7} {'+ret ms':>8} {'no q:':>6} {'langs':>6}"
    )
    for lang, group in groups.items():
        n = len(group)
        cells = {v: sum(r[v] for r in group) / n for v in variants}
        asked = sum(len(r["targets"]) for r in group)
        got = sum(len(r["translated"]) for r in group)
        extra = {
            "llm_s_mean": round(sum(r["llm_s"] for r in group) / n, 2),
            "extra_retrieval_ms_median": statistics.median(r["extra_retrieval_ms"] for r in group),
            "no_question_line": sum(not r["standalone_found"] for r in group),
            "translations_returned": f"{got}/{asked}",
        }
        summary[lang] = {"n": n, **{v: round(c, 3) for v, c in cells.items()}, **extra}
        print(
            f"{lang:>5} {n:>4} "
            + " ".join(f"{cells[v]:>8.3f}" for v in variants)
            + f" {extra['llm_s_mean']:>7.2f} {extra['extra_retrieval_ms_median']:>8.1f}"
            + f" {extra['no_question_line']:>6} {got:>3}/{asked:<3}"
        )
    return summary


if __name__ == "__main__":
    main()
