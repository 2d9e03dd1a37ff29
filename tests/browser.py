"""Debian's headless Chromium for the browser tests: where it is, how it is launched, and what
happens when it is missing (a skip on a developer's machine, a failure in CI, where the browser
tests must run), and the app with its documents that each browser test file serves. One place,
so the four browser test files cannot drift apart."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import live_server

CHROMIUM = os.environ.get("KBCHAT_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
# quiet and offline: no sandbox (CI runs as root), no GPU, no background fetches or updates
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> str:
    """The chromium to launch: KBCHAT_CHROMIUM (default /usr/bin/chromium), else the one on PATH.
    Skips the calling test (fails it under CI=...) when there is none; called before a server is
    built, so a machine without it wastes no time."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI ({CHROMIUM})")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return found


@contextmanager
def launch_chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright Browser), closed on exit."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve_docs(
    settings: Any, docs: dict[str, str], embedder: Any, collection: str = "", **app_options: Any
) -> Iterator[str]:
    """The app of `settings` on a loopback port, after writing `docs` (file name: text) to a
    folder beside its data dir and ingesting them into `collection` (the settings' own when
    empty) with `embedder`; yields its URL. `app_options` go to create_app."""
    from app.ingest import ingest_folder
    from app.server.app import create_app

    folder = Path(settings.data_dir).parent / "docs"
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingest_folder(settings, folder, collection or settings.collection, embedder=embedder)
    with live_server(create_app(settings, embedder=embedder, **app_options)) as url:
        yield url


def screenshot(page: Any, folder: str, name: str) -> None:
    """Save a screenshot as a test artifact, to look at: $KBCHAT_TEST_ARTIFACTS/folder, else
    test-artifacts/folder in the checkout."""
    base = os.environ.get("KBCHAT_TEST_ARTIFACTS")
    target = (Path(base) if base else REPO / "test-artifacts") / folder
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name))


def open_console(
    browser: Any, url: str, key: str, *, theme: str, locale: str, width: int, height: int
) -> Any:
    """A new page of the app at `url` with the Console tab unlocked by `key` (its panel shown);
    the caller picks the console page it tests."""
    from playwright.sync_api import expect

    context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{url}/?__theme={theme}")
    page.get_by_role("tab", name="Console").click()
    page.locator("#kbchat-console-key input").fill(key)
    page.locator("#kbchat-console-unlock").click()
    expect(page.locator("#kbchat-console")).to_be_visible(timeout=30_000)
    return page
