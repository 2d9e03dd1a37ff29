"""Calibrate the threshold that detects a visitor asking for a person (app/server/handoff_phrase.py,
exemplars in prompts/handoff_phrases.json), as bench/calibrate_small_talk.py does for small talk.

Positives: requests for a person written apart from the exemplars (other wordings, languages
without exemplars) and each exemplar against the exemplars of the *other* languages only (leave
one language out). Negatives: every short XQuAD dev question (12 languages) and questions that
mention people, agents or customer service without asking for one. Prints the lowest threshold
that lets no negative through, and what a few thresholds catch.
Usage: nice -n 10 .venv/bin/python bench/calibrate_handoff_phrases.py [--every 4]
(--every 4: the small-talk calibration's sample of 1,896 questions, whose embeddings it cached)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO.parent / "shared" / "data" / "xquad-dev"
CACHE = Path("/tmp/kbchat-cache-offtopic")

HELD_APART = [  # none of these is in prompts/handoff_phrases.json
    ("en", "let me talk to someone"),
    ("en", "can I get a real person?"),
    ("en", "I'd like to chat with an agent"),
    ("en", "get me a human"),
    ("en", "operator!"),
    ("de", "Ich will einen Menschen sprechen"),
    ("de", "Bitte einen echten Mitarbeiter"),
    ("es", "Necesito hablar con una persona"),
    ("es", "¿me pasas con un humano?"),
    ("es", "quiero un agente humano"),
    ("fr", "je voudrais parler à quelqu'un"),
    ("fr", "un conseiller humain svp"),
    ("it", "vorrei parlare con un umano"),
    ("pt", "quero falar com um humano"),
    ("nl", "mag ik een echte persoon?"),
    ("ru", "позовите человека"),
    ("zh", "我要人工服务"),
    ("ja", "人間と話したい"),
    ("ar", "أريد موظفا بشريا"),
    ("pl", "Chcę rozmawiać z człowiekiem"),
    ("tr", "Bir insanla konuşmak istiyorum"),
    ("sv", "Jag vill prata med en människa"),
    ("ko", "상담원 연결해 주세요"),
]
NEGATIVES = [
    "Who is the CEO?",
    "Who founded the company?",
    "How many people work here?",
    "Who is the person in charge of returns?",
    "What did the agent say about the delivery?",
    "What are the customer service opening hours?",
    "Is the agent fee included in the price?",
    "How do humans digest lactose?",
    "What is a travel agent?",
    "¿Quién es el director?",
    "¿Cuántas personas viven en Madrid?",
    "¿Qué es un agente inmobiliario?",
    "Wer hat die Firma gegründet?",
    "Wie viele Menschen leben in Berlin?",
    "Qui est le fondateur ?",
    "Combien de personnes travaillent ici ?",
    "谁创立了公司？",
    "有多少人在这里工作？",
    "من هو المؤسس؟",
    "Сколько людей живёт в Москве?",
    "Hello, what is the battery warranty?",
    "How long is the battery warranty?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=XQUAD)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--every", type=int, default=1, help="use every n-th dev question")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from embedding_cache import cached

    from app.chat.small_talk import length_fits, load_exemplars
    from app.embeddings.e5 import build_embeddings
    from app.evaluation import read_queries
    from app.server.handoff_phrase import MAX_CHARS
    from app.settings import load_settings

    settings = load_settings()
    embedder = build_embeddings(settings)
    exemplars = load_exemplars(settings.prompts_dir / "handoff_phrases.json", ("handoff",))
    shipped = {e.text.casefold() for e in exemplars}
    assert not shipped & {t.casefold() for _, t in HELD_APART}, "held-apart text is an exemplar"
    ex = cached(embedder, [e.text for e in exemplars], "query", args.cache)
    ex_lang = np.array([e.language for e in exemplars])

    def best(texts: list[str]) -> np.ndarray:
        scores = cached(embedder, texts, "query", args.cache) @ ex.T
        nearest = scores.argmax(axis=1)
        fits = [
            len(t) <= MAX_CHARS and length_fits(t, exemplars[i].text)
            for t, i in zip(texts, nearest, strict=True)
        ]
        return np.where(fits, scores.max(axis=1), 0.0)

    held = best([t for _, t in HELD_APART])
    loo = ex @ ex.T
    loo[ex_lang[:, None] == ex_lang[None, :]] = -1.0
    loo_best = loo.max(axis=1)
    questions = [q.question for q in read_queries(args.data / "queries.jsonl")[:: args.every]]
    xq = best(questions)
    neg = best(NEGATIVES)
    negatives = np.concatenate([xq, neg])
    threshold = float(np.ceil(negatives.max() * 100 + 1e-9) / 100)
    print(f"model {embedder.spec.model_id}; {len(exemplars)} exemplars; max {MAX_CHARS} chars")
    for name, values in (
        (f"XQuAD dev questions (all {len(questions)})", xq),
        ("questions about people/agents", neg),
        ("held-apart requests", held),
        ("exemplars, other languages only", loo_best),
    ):
        q = np.quantile(values, [0.0, 0.5, 0.99, 1.0])
        print(
            f"{name:34s} n={len(values):5d} min {q[0]:.3f} p50 {q[1]:.3f} "
            f"p99 {q[2]:.3f} max {q[3]:.3f}"
        )
    worst = np.argsort(-neg)[:5]
    print("closest negatives:", [(NEGATIVES[i], round(float(neg[i]), 3)) for i in worst])
    for t in sorted({round(threshold, 2), 0.86, 0.87, 0.88, 0.89, 0.9}):
        print(
            f"threshold {t:.2f}: held-apart caught {(held >= t).mean():.1%}, "
            f"leave-language-out caught {(loo_best >= t).mean():.1%}, "
            f"negatives passed {(negatives >= t).sum()} of {len(negatives)}"
        )
    print(
        "held-apart lowest:",
        [(HELD_APART[i][1], round(float(held[i]), 3)) for i in np.argsort(held)[:8]],
    )


if __name__ == "__main__":
    main()
