"""/docs and /redoc work without internet: every asset they load is served by kbchat itself."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.browser import launch_chromium
from tests.fakes import FakeEmbedder
from tests.live_server import live_server


class _Assets(HTMLParser):
    """The src and href attributes of a page: what a browser would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v]


def _app(tmp_path: Path) -> Any:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", ingest={"resync_on_start": False})
    return create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(tmp_path)) as c:
        yield c


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str, script: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert "cdn." not in response.text and "fonts.googleapis" not in response.text
    parser = _Assets()
    parser.feed(response.text)
    assert any(script in url for url in parser.urls), parser.urls
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # same origin
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_docs_static_files_refuse_path_traversal(client: TestClient) -> None:
    for path in ("/static-offline-docs/../settings.py", "/static-offline-docs/%2e%2e/core.py"):
        assert client.get(path).status_code == 404


@pytest.mark.integration
def test_swagger_ui_renders_in_chromium_with_the_internet_blocked(tmp_path: Path) -> None:
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with launch_chromium() as browser, live_server(_app(tmp_path)) as url:
        page = browser.new_page()
        page.route("**/*", only_loopback)
        page.goto(f"{url}/docs")
        page.locator(".opblock").first.wait_for(timeout=30_000)
        assert page.locator(".opblock").count() >= 10
        assert "kbchat" in page.locator(".title").first.inner_text()
    assert outside == []
