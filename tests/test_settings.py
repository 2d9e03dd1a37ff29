"""Settings: KBCHAT_* env names map onto the nested groups; .env.example lists every field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from app.settings import DEFAULT_MODEL, Settings, load_settings, validate_collection_name

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KBCHAT_* from the caller's shell and no `.env` from the working directory."""
    import os

    for name in list(os.environ):
        if name.startswith("KBCHAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load_settings()
    assert s.embedding.model == DEFAULT_MODEL == "intfloat/multilingual-e5-small"
    assert s.chroma.host is None
    assert s.chroma.port == 8000
    assert s.chunk.tokens == 512
    assert s.chunk.overlap == 64
    assert s.collection == "default"
    assert s.data_dir == Path("data")


def test_env_maps_to_nested_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KBCHAT_EMBEDDING_MODEL", "intfloat/multilingual-e5-large-instruct")
    monkeypatch.setenv("KBCHAT_CHROMA_HOST", "chroma.internal")
    monkeypatch.setenv("KBCHAT_CHROMA_PORT", "9123")
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "kbdata"))
    monkeypatch.setenv("KBCHAT_CHUNK_TOKENS", "200")
    monkeypatch.setenv("KBCHAT_EMBEDDING_BATCH_SIZE", "7")
    monkeypatch.setenv("KBCHAT_INGEST_EMBED_BATCH_CHUNKS", "64")
    s = load_settings()
    assert s.embedding.model == "intfloat/multilingual-e5-large-instruct"
    assert s.chroma.host == "chroma.internal"
    assert s.chroma.port == 9123
    assert s.data_dir == tmp_path / "kbdata"
    assert s.chunk.tokens == 200
    assert s.embedding.batch_size == 7
    assert s.ingest.embed_batch_chunks == 64
    # untouched siblings keep their defaults
    assert s.chunk.overlap == 64
    assert s.embedding.prefix_scheme == "auto"
    assert s.chroma_dir == tmp_path / "kbdata" / "chroma"
    assert s.models_dir == tmp_path / "kbdata" / "models"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KBCHAT_CHUNK_OVERLAP=11\nKBCHAT_COLLECTION=docs-v2\n")
    s = load_settings()
    assert s.chunk.overlap == 11
    assert s.collection == "docs-v2"


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBCHAT_CHUNK_TOKENS", "200")
    s = load_settings(chunk={"tokens": 123})
    assert s.chunk.tokens == 123


def test_invalid_env_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBCHAT_CHROMA_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        load_settings()


@pytest.mark.parametrize(
    "name", ["a", "ab", "-abc", "abc-", "a..b", "has space", "ümlaut", "", "127.0.0.1", "A" * 201]
)
def test_invalid_collection_name(name: str) -> None:
    with pytest.raises(ValueError, match="invalid collection name") as info:
        validate_collection_name(name)
    assert repr(name) in str(info.value)
    assert "3-200" in str(info.value)


def test_invalid_collection_name_via_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBCHAT_COLLECTION", "bad name!")
    with pytest.raises(ValidationError, match="invalid collection name 'bad name!'"):
        load_settings()


@pytest.mark.parametrize("name", ["abc", "kb_test-1.v2", "A" * 200])
def test_valid_collection_name(name: str) -> None:
    assert validate_collection_name(name) == name


def test_manifests_dir_embedded_vs_server(tmp_path: Path) -> None:
    embedded = load_settings(data_dir=tmp_path)
    server = load_settings(data_dir=tmp_path, chroma={"host": "db.example.com", "port": 8001})
    other_port = load_settings(data_dir=tmp_path, chroma={"host": "db.example.com", "port": 8002})
    assert embedded.manifests_dir == tmp_path / "manifests" / "embedded"
    assert server.manifests_dir == tmp_path / "manifests" / "db.example.com_8001"
    assert len({embedded.manifests_dir, server.manifests_dir, other_port.manifests_dir}) == 3


def test_manifests_dir_is_sanitised(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, chroma={"host": "http://[::1]/x"})
    assert s.manifests_dir.parent == tmp_path / "manifests"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", s.manifests_dir.name)


# --------------------------------------------------------------------------- .env.example


def settings_env_names() -> list[str]:
    """KBCHAT_<FIELD> for top-level fields, KBCHAT_<GROUP>_<FIELD> for nested groups, and the
    alias itself for fields read under another name (OPENAI_API_KEY, OPENAI_BASE_URL)."""
    names = []
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(info.validation_alias, str):
            names.append(info.validation_alias)
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            names += [  # a group's field read under another name (smtp.sender: _FROM)
                f"KBCHAT_{name}_{sub_info.alias or sub}".upper()
                for sub, sub_info in kind.model_fields.items()
            ]
        else:
            names.append(f"KBCHAT_{name}".upper())
    return names


def test_settings_env_names_cover_groups() -> None:
    names = settings_env_names()
    assert "KBCHAT_DATA_DIR" in names
    assert "KBCHAT_EMBEDDING_MODEL" in names
    assert "KBCHAT_CHROMA_HOST" in names
    assert "KBCHAT_INGEST_EMBED_BATCH_CHUNKS" in names
    assert "KBCHAT_EMBEDDING" not in names  # a group is not a variable itself


def test_env_example_lists_every_setting() -> None:
    example = REPO / ".env.example"
    assert example.is_file(), f"{example} is missing; it must list: {settings_env_names()}"
    listed = set(
        re.findall(
            r"^[ \t]*#?[ \t]*((?:KBCHAT|OPENAI)_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE
        )
    )
    missing = [n for n in settings_env_names() if n not in listed]
    assert not missing, f".env.example lacks these settings: {missing}"
    unknown = sorted(listed - set(settings_env_names()))
    assert not unknown, f".env.example lists names that are not settings: {unknown}"


def test_env_example_parses_to_the_defaults(tmp_path: Path) -> None:
    example = REPO / ".env.example"
    if not example.is_file():
        pytest.fail(f"{example} is missing")
    (tmp_path / ".env").write_text(example.read_text())
    from_example = load_settings()
    assert from_example.model_dump() == Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
