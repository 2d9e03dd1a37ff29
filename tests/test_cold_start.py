"""What the start of `kbchat search`, `kbchat ask` and `kbchat serve` imports, read from the real
commands with `python -X importtime`: search and ask load nothing of the server or the UI, and
the server's start loads torch and sentence-transformers only through a local encoder.

Vectors come from tests/embedding_stub.py (KBCHAT_EMBEDDING_URL) with a deterministic
bag-of-words encoder, so no process here loads a model: what torch shows up was imported by
kbchat's own start path. The bench behind these rules is bench/cold_start.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.embeddings.e5 import build_embeddings
from app.ingest import ingest_folder
from app.settings import load_settings
from tests.conftest import REPO
from tests.embedding_stub import EmbeddingStub
from tests.openai_stub import OpenAIStub
from tests.services import free_port

DIM = 384  # multilingual-e5-small
DOCS = {
    "vesuvius.md": "# Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. It last"
    " erupted in 1944.",
    "tokyo.md": "# Tokyo\n\nTokyo is the capital of Japan and its largest city.",
}
QUESTION = "When did Mount Vesuvius near Naples last erupt?"
SERVER_OR_UI = ("gradio", "fastapi", "starlette", "uvicorn", "app.server")
# transformers alone is allowed: the remote encoder builds its tokenizer with it (no torch)
TORCH = ("torch", "sentence_transformers", "sklearn")
_IMPORT_LINE = re.compile(r"^import time:\s*\d+ \|\s*\d+ \|\s*(\S+)\s*$")


def bag_of_words(texts: list[str]) -> np.ndarray:
    """One unit vector per text from its hashed words: texts sharing words are close."""
    out = np.zeros((len(texts), DIM), np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[row, zlib.crc32(word.encode()) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def imported(importtime_stderr: str) -> set[str]:
    return {m.group(1) for m in map(_IMPORT_LINE.match, importtime_stderr.splitlines()) if m}


def under(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, e5_model_dir: Path) -> Iterator[dict[str, str]]:
    """The environment of a kbchat process over a small ingested knowledge base, with vectors
    from the embedding stub and answers from the LLM stub."""
    base = tmp_path_factory.mktemp("cold")
    (base / "docs").mkdir()
    for name, text in DOCS.items():
        (base / "docs" / name).write_text(text, encoding="utf-8")
    with EmbeddingStub(bag_of_words) as embed, OpenAIStub(reply="In 1944 [1].") as llm:
        settings = load_settings(
            data_dir=base / "data", embedding={"model": str(e5_model_dir), "url": embed.base_url}
        )
        ingest_folder(settings, base / "docs", "default", embedder=build_embeddings(settings))
        yield {
            **os.environ,
            "KBCHAT_DATA_DIR": str(base / "data"),
            "KBCHAT_EMBEDDING_MODEL": str(e5_model_dir),
            "KBCHAT_EMBEDDING_URL": embed.base_url,
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-test",
            "KBCHAT_LLM_MODEL": "stub",
            "HF_HUB_OFFLINE": "1",
            # bag-of-words cosines are not the model's: no calibrated cut-offs
            "KBCHAT_RETRIEVAL_MIN_SCORE": "0",
            "KBCHAT_RETRIEVAL_MIN_MARGIN": "-1",
        }


def run_cli(env: dict[str, str], *args: str) -> tuple[str, set[str]]:
    """The command's stdout and every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard on a loaded 2-core machine, not a speed test
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, imported(proc.stderr)


def test_search_and_ask_import_nothing_of_the_server_or_the_ui(kb: dict[str, str]) -> None:
    out, modules = run_cli(kb, "search", QUESTION, "--json")
    assert "vesuvius.md" in out  # the command did its work
    assert "app.search" in modules
    assert under(modules, SERVER_OR_UI) == []
    out, modules = run_cli(kb, "ask", QUESTION, "--json")
    assert "1944" in out
    assert "app.chat.chain" in modules
    assert under(modules, SERVER_OR_UI) == []


def test_serve_starts_without_torch_when_the_encoder_needs_none(
    kb: dict[str, str], tmp_path: Path
) -> None:
    """The whole start, up to /api/ready and the UI's first page: torch may come only with a
    local torch encoder, never from the server, the store, the chain or the UI."""
    port = free_port()
    log = tmp_path / "importtime.txt"
    with log.open("w") as err:
        server = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "app.cli", "serve", "--port", str(port)],
            env=kb,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,  # a file: importtime writes more than a pipe holds
        )
        try:
            deadline = time.monotonic() + 600  # a hang guard, not a speed test
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=5).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "kbchat serve did not become ready"
                time.sleep(0.1)
            # the UI is built after the start: a page asked for now waits for it, never a 404
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=600)
            assert page.status_code == 200 and "gradio" in page.text.lower()
        finally:
            server.terminate()
            server.wait(timeout=60)
    modules = imported(log.read_text())
    assert "gradio" in modules  # the UI was built
    assert under(modules, TORCH) == []


def test_the_ui_sends_no_telemetry_and_checks_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradio, by default, starts a thread that asks its website for the latest version and
    posts usage data to Hugging Face whenever a UI is built: a self-hosted server must not call
    out (nor spend its start on it), whatever GRADIO_ANALYTICS_ENABLED says."""
    import gradio.analytics

    from app.server.services import Services
    from app.server.ui import build_ui

    calls: list[str] = []
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    monkeypatch.setattr(gradio.analytics, "version_check", lambda: calls.append("version"))
    monkeypatch.setattr(
        gradio.analytics, "_do_analytics_request", lambda **_: calls.append("analytics")
    )
    settings = load_settings(data_dir=tmp_path)
    services = Services(settings, embedder=None, client=None, llm=None, conversations=None)  # type: ignore[arg-type]
    blocks = build_ui(services)
    assert calls == []  # the usage report is sent from Blocks() itself (in its own thread)
    assert blocks.analytics_enabled is False  # what gates the version-check thread


PRELOAD_THEN_EXIT = """
import sys, threading, time
from pathlib import Path
from app.embeddings.e5 import E5Embeddings
from app.embeddings.profiles import PrefixProfile
from app.embeddings.resolve import ResolvedModel

marker = Path(sys.argv[1])
started = threading.Event()


class SlowLoad(E5Embeddings):
    def _load(self):
        started.set()
        time.sleep(0.5)  # a model still loading in native code when the process ends
        marker.write_text("loaded")
        return object()


model = ResolvedModel("x/model", Path("."), "local", "local")
SlowLoad(model, PrefixProfile("e5")).preload()
started.wait(10)
sys.exit(2)  # a start-up error (an unreachable Chroma server) while the model loads
"""


def test_a_process_that_fails_while_the_model_loads_waits_for_the_load(tmp_path: Path) -> None:
    """The model loads in a background thread while start-up goes on; when start-up fails, the
    process ends with its own exit code after the load, never killing the loader half way
    (native loaders aborted the process at exit: "terminate called without an active
    exception", which a user sees instead of the clear error)."""
    marker = tmp_path / "loaded"
    proc = subprocess.run(
        [sys.executable, "-c", PRELOAD_THEN_EXIT, str(marker)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert marker.read_text() == "loaded"
