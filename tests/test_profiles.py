"""Prefix schemes: which one a model gets, the exact strings, and the task instruction file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.embeddings.profiles import PrefixProfile, detect_scheme, load_task, make_profile

REPO = Path(__file__).resolve().parent.parent
TASK = "Given a question, retrieve passages that answer the question"


@pytest.mark.parametrize(
    ("model", "scheme"),
    [
        ("intfloat/multilingual-e5-small", "e5"),
        ("intfloat/multilingual-e5-base", "e5"),
        ("intfloat/multilingual-e5-large-instruct", "instruct"),
        ("intfloat/e5-mistral-7b-instruct", "instruct"),
        ("intfloat/e5-base-v2", "e5"),
        ("/models/my-e5-small", "e5"),
        ("/models/my-e5-small/", "e5"),
        ("/models/E5-Large-Instruct", "instruct"),
        ("sentence-transformers/all-MiniLM-L6-v2", "none"),
        ("BAAI/bge-m3", "none"),
        ("/models/e5-models/minilm", "none"),  # only the last path part names the model
    ],
)
def test_detect_scheme(model: str, scheme: str) -> None:
    assert detect_scheme(model) == scheme


def test_e5_forms() -> None:
    p = PrefixProfile("e5")
    assert p.query("wie spät ist es?") == "query: wie spät ist es?"
    assert p.passage("Es ist acht Uhr.") == "passage: Es ist acht Uhr."
    assert p.passage_prefix == "passage: "


def test_instruct_forms() -> None:
    p = PrefixProfile("instruct", TASK)
    assert p.query("北京在哪里？") == f"Instruct: {TASK}\nQuery: 北京在哪里？"
    assert p.passage("北京是中国的首都。") == "北京是中国的首都。"
    assert p.passage_prefix == ""


def test_none_forms() -> None:
    p = PrefixProfile("none")
    assert p.query("hello") == "hello"
    assert p.passage("world") == "world"
    assert p.passage_prefix == ""


def test_describe_names_the_scheme() -> None:
    assert PrefixProfile("e5").describe().startswith("e5:")
    assert PrefixProfile("instruct", TASK).describe().startswith("instruct:")
    assert PrefixProfile("none").describe() == "none: no prefixes"


def test_load_task_from_repo() -> None:
    assert load_task(REPO / "prompts") == TASK


@pytest.mark.parametrize(
    "content",
    ["", "   \n\n", "first line\nsecond line", "Retrieve passages about {topic}"],
    ids=["empty", "blank", "multi-line", "placeholder"],
)
def test_load_task_rejects_bad_files(tmp_path: Path, content: str) -> None:
    (tmp_path / "e5_task_retrieval.txt").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="one non-empty line without placeholders"):
        load_task(tmp_path)


def test_load_task_strips_surrounding_whitespace(tmp_path: Path) -> None:
    (tmp_path / "e5_task_faq.txt").write_text("  Find the FAQ entry  \n", encoding="utf-8")
    assert load_task(tmp_path, "faq") == "Find the FAQ entry"


def test_load_task_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"e5_task_retrieval\.txt"):
        load_task(tmp_path)


def test_make_profile() -> None:
    prompts = REPO / "prompts"
    assert make_profile("intfloat/multilingual-e5-small", prompts) == PrefixProfile("e5")
    assert make_profile("intfloat/multilingual-e5-large-instruct", prompts) == PrefixProfile(
        "instruct", TASK
    )
    assert make_profile("sentence-transformers/all-MiniLM-L6-v2", prompts) == PrefixProfile("none")
    # an explicit scheme wins over the name
    assert make_profile("my/custom-model", prompts, "e5") == PrefixProfile("e5")


def test_make_profile_e5_does_not_need_task_file(tmp_path: Path) -> None:
    assert make_profile("intfloat/e5-base-v2", tmp_path) == PrefixProfile("e5")
    with pytest.raises(FileNotFoundError):
        make_profile("intfloat/e5-mistral-7b-instruct", tmp_path)
