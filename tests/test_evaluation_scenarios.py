"""`kbchat eval --dataset`: the scenario builders, the raw-model switch, the vector cache, the
chart, and one run through the real pipeline and the real model on a dataset the test writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.evaluation import EvalQuery, report
from app.evaluation_chart import scenario_svg, write_chart
from app.evaluation_scenarios import (
    NOT_RANKING,
    RAW_RANKING,
    Comparison,
    Dataset,
    build_mixed,
    build_pooled,
    build_single,
    plan,
    raw_settings,
)
from app.settings import RetrievalSettings, load_settings

DOCS = {  # id -> language -> text; a parallel corpus as in ../shared/data/xquad-dev
    "p0": {
        "en": "Mount Vesuvius erupted in 79 AD and buried the Roman towns of Pompeii and"
        " Herculaneum under ash.",
        "de": "Der Vesuv brach im Jahr 79 n. Chr. aus und begrub die römischen Städte Pompeji und"
        " Herculaneum unter Asche.",
        "fr": "Le Vésuve est entré en éruption en 79 apr. J.-C. et a enseveli les villes romaines"
        " de Pompéi et d'Herculanum sous la cendre.",
    },
    "p1": {
        "en": "The Wuppertal Suspension Railway opened in 1901 and still carries passengers"
        " above the river Wupper.",
        "de": "Die Wuppertaler Schwebebahn wurde 1901 eröffnet und befördert noch heute Fahrgäste"
        " über der Wupper.",
        "fr": "Le monorail suspendu de Wuppertal a ouvert en 1901 et transporte toujours des"
        " passagers au-dessus de la Wupper.",
    },
    "p2": {
        "en": "Honey bees perform a waggle dance to tell other bees where flowers are.",
        "de": "Honigbienen führen einen Schwänzeltanz auf, um anderen Bienen zu zeigen, wo"
        " Blumen sind.",
        "fr": "Les abeilles exécutent une danse frétillante pour indiquer aux autres abeilles"
        " où se trouvent les fleurs.",
    },
    "p3": {  # only in two languages: the mixed builder must find it a language that has it
        "en": "Emmental is a Swiss cheese with large holes, made from cow's milk.",
        "de": "Emmentaler ist ein Schweizer Käse mit großen Löchern, hergestellt aus Kuhmilch.",
    },
}
QUESTIONS = [
    ("p0", "en", "Which towns did Vesuvius bury?"),
    ("p0", "de", "Welche Städte begrub der Vesuv?"),
    ("p0", "fr", "Quelles villes le Vésuve a-t-il ensevelies ?"),
    ("p1", "en", "When did the suspension railway in Wuppertal open?"),
    ("p1", "de", "Wann wurde die Schwebebahn in Wuppertal eröffnet?"),
    ("p1", "fr", "Quand le monorail de Wuppertal a-t-il ouvert ?"),
    ("p2", "en", "How do bees tell each other where flowers are?"),
    ("p2", "de", "Wie zeigen Bienen einander, wo Blumen sind?"),
    ("p2", "fr", "Comment les abeilles indiquent-elles où sont les fleurs ?"),
    ("p3", "en", "Which cheese has large holes?"),
    ("p3", "fr", "Quel fromage a de grands trous ?"),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for doc, texts in DOCS.items():
        for lang, text in texts.items():
            (root / "corpus" / lang).mkdir(parents=True, exist_ok=True)
            (root / "corpus" / lang / f"{doc}.txt").write_text(text + "\n", encoding="utf-8")
    rows = [{"question": q, "lang": lang, "paragraph_id": doc} for doc, lang, q in QUESTIONS]
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8"
    )
    return root


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- raw model switch


def test_every_retrieval_setting_is_classified_as_ranking_or_not() -> None:
    """A new ranking correction must be switched off for "raw", or declared not to rank."""
    assert set(RAW_RANKING) | NOT_RANKING == set(RetrievalSettings.model_fields)
    assert not set(RAW_RANKING) & NOT_RANKING


def test_raw_settings_switch_every_correction_off_and_keep_the_rest() -> None:
    settings = load_settings(retrieval={"language_centring": True, "k": 7})
    raw = raw_settings(settings)
    assert {name: getattr(raw.retrieval, name) for name in RAW_RANKING} == RAW_RANKING
    assert raw.retrieval.k == 7 and settings.retrieval.language_centring is True


# --------------------------------------------------------------------------- builders


def test_mixed_puts_document_i_in_language_i_mod_n(dataset: Path, tmp_path: Path) -> None:
    built = build_mixed(Dataset(dataset), tmp_path / "mixed")
    assert files(built) == ["p0.txt", "p1.txt", "p2.txt", "p3.txt"]
    langs = {"de": "Der Vesuv", "en": "The Wuppertal", "fr": "Les abeilles"}
    assert [(built / f"p{i}.txt").read_text(encoding="utf-8") for i in range(3)] == [
        DOCS[f"p{i}"][lang] + "\n" for i, lang in enumerate(langs)
    ]
    # p3: 3 % 3 = 0, German again
    assert (built / "p3.txt").read_text(encoding="utf-8") == DOCS["p3"]["de"] + "\n"


def test_mixed_falls_back_to_the_next_language_that_has_the_document(
    dataset: Path, tmp_path: Path
) -> None:
    (dataset / "corpus" / "de" / "p3.txt").unlink()  # p3 now only in English
    built = build_mixed(Dataset(dataset), tmp_path / "mixed")
    assert (built / "p3.txt").read_text(encoding="utf-8") == DOCS["p3"]["en"] + "\n"


def test_pooled_and_single(dataset: Path, tmp_path: Path) -> None:
    data = Dataset(dataset)
    assert len(files(build_pooled(data, tmp_path / "pooled"))) == 11
    assert files(build_pooled(data, tmp_path / "p2"))[:2] == ["de/p0.txt", "de/p1.txt"]
    assert files(build_single(data, tmp_path / "fr", "fr")) == ["p0.txt", "p1.txt", "p2.txt"]


def test_plan_names_the_runs_and_refuses_unknown_input(dataset: Path) -> None:
    data = Dataset(dataset)
    assert [r.name for r in plan(data, "same")] == ["same-de", "same-en", "same-fr"]
    same_fr = plan(data, "same")[2]
    assert [q.lang for q in data.queries if same_fr.questions(q)] == ["fr"] * 4
    assert [r.name for r in plan(data, "single:en")] == ["single-en"]
    with pytest.raises(ValueError, match="no corpus/xx"):
        plan(data, "single:xx")
    with pytest.raises(ValueError, match="unknown scenario 'blend'"):
        plan(data, "blend")
    with pytest.raises(NotADirectoryError, match=r"queries\.jsonl"):
        Dataset(dataset / "corpus")


# --------------------------------------------------------------------------- chart


def comparison() -> Comparison:
    queries = [EvalQuery("q", "de", "a"), EvalQuery("q", "de", "a"), EvalQuery("q", "zh", "a")]
    return Comparison(report(queries, [1, None, None], 10), report(queries, [1, 1, 2], 10))


def test_chart_draws_raw_and_corrected_bars_per_language() -> None:
    svg = scenario_svg("mixed <dev>", comparison())
    assert "mixed &lt;dev&gt;" in svg  # escaped
    assert svg.count("<rect") == 6  # de, zh, all x raw, corrected
    assert "de raw recall@1 0.500" in svg and "de corrected recall@1 1.000" in svg
    assert "zh raw recall@1 0.000" in svg and "+0.50" in svg


def test_chart_page_is_self_contained(tmp_path: Path) -> None:
    page = write_chart(tmp_path / "out" / "chart.html", {"a": comparison(), "b": comparison()})
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 2
    assert "<script" not in text and "src=" not in text and "href=" not in text


# --------------------------------------------------------------------------- real model


@pytest.mark.integration
def test_scenarios_through_the_pipeline(
    dataset: Path, tmp_path: Path, e5: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.evaluation_scenarios import CachedEmbeddings, run_scenario

    cache = tmp_path / "cache"
    embedder = CachedEmbeddings(e5, cache)
    settings = load_settings(data_dir=tmp_path / "unused")
    data = Dataset(dataset)

    mixed = run_scenario(settings, data, "mixed", embedder, k=3)
    assert mixed.corrected.queries == mixed.raw.queries == len(QUESTIONS)
    assert mixed.corrected.counts == {"de": 3, "en": 4, "fr": 4}
    assert mixed.raw.overall["recall@1"] >= 0.9  # four distinct topics: easy for the raw model

    same = run_scenario(settings, data, "same", embedder, k=3, languages=["de", "fr"])
    assert same.corrected.counts == {"de": 3, "fr": 4}
    assert same.raw.by_language["de"]["recall@1"] == 1.0  # German has every document
    assert not (tmp_path / "unused").exists()  # built in a temporary data dir

    # With every correction already off, "corrected" is the raw ranking itself.
    off = run_scenario(raw_settings(settings), data, "pooled", embedder, k=3)
    assert off.corrected.to_dict() == off.raw.to_dict()

    embedder.save()  # a second cache over the same folder embeds nothing
    again = CachedEmbeddings(e5, cache)
    assert set(again.vectors) == set(embedder.vectors)
    calls: list[int] = []
    monkeypatch.setattr(e5, "encode", lambda texts: calls.append(len(texts)))
    run_scenario(settings, data, "single:de", again, k=3)
    assert calls == []


@pytest.fixture
def vector_cache(dataset: Path, tmp_path: Path, e5: Any) -> Path:
    """A `--cache-dir` holding every vector the CLI runs below need (the dataset's passages,
    sentences and questions, the statistics' reference sentences of its languages): the
    session's model has embedded them already, so the subprocesses need not do it again."""
    from app.evaluation_scenarios import CachedEmbeddings, run_scenario

    cache = tmp_path / "vectors"
    embedder = CachedEmbeddings(e5, cache)
    run_scenario(load_settings(), Dataset(dataset), "pooled", embedder, k=3)
    embedder.save()
    return cache


@pytest.mark.integration
def test_eval_cli_with_a_dataset_writes_json_and_a_chart(
    dataset: Path, tmp_path: Path, cli: Any, vector_cache: Path
) -> None:
    chart = tmp_path / "chart.html"
    (stored,) = vector_cache.iterdir()
    before = stored.read_bytes()
    run = ("eval", "--dataset", str(dataset), "--cache-dir", str(vector_cache))
    result = cli.json(*run, "-s", "mixed", "-s", "single:en", "--chart", str(chart))
    assert set(result["scenarios"]) == {"mixed", "single:en"}
    mixed = result["scenarios"]["mixed"]
    assert mixed["queries"] == len(QUESTIONS) and mixed["raw"]["queries"] == len(QUESTIONS)
    assert set(mixed["by_language"]) == set(mixed["raw"]["by_language"]) == {"de", "en", "fr"}
    sample = cli.json(*run, "--per-language", "2", "--langs", "en,fr")
    assert sample["scenarios"]["mixed"]["queries_by_language"] == {"en": 2, "fr": 2}
    assert chart.read_text(encoding="utf-8").count("<svg") == 2
    assert stored.read_bytes() == before  # every vector came from the cache: nothing embedded
    table = cli.run("eval", "--dataset", str(dataset), "-s", "blend", check=False)
    assert table.returncode == 2 and "unknown scenario 'blend'" in table.stderr
