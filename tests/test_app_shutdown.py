"""An app closes what it opened when it shuts down: a process that builds many apps (the test
suite, a server reloading) must not keep every Chroma and SQLite file of the previous ones open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder

FDS = Path("/proc/self/fd")


def _open_files(under: Path) -> list[str]:
    found = []
    for fd in os.listdir(FDS):
        try:
            target = os.readlink(FDS / fd)
        except OSError:  # closed while listing
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found


@pytest.mark.skipif(not FDS.is_dir(), reason="needs /proc/self/fd (Linux)")
def test_shutdown_closes_the_chroma_and_conversation_databases(tmp_path: Path) -> None:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", ingest={"resync_on_start": False})
    app = create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)
    with TestClient(app) as client:
        assert client.get("/api/collections").status_code in (200, 401)
        assert client.post("/api/chat", json={"message": "hello"}).status_code in (200, 404)
        assert _open_files(tmp_path), "the app should hold its databases open while it runs"
    assert _open_files(tmp_path) == []
