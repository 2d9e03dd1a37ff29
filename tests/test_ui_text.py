"""What the Gradio chat shows of model or document text: escaped HTML, no Markdown images."""

from __future__ import annotations

from app.server.ui import as_text


def test_html_is_escaped_and_citations_survive() -> None:
    shown = as_text('It is <img src=x onerror="alert(1)"> here [1].')
    assert "<img" not in shown and "&lt;img src=x" in shown
    assert shown.endswith("here [1].")


def test_markdown_images_are_not_rendered_as_images() -> None:
    shown = as_text("Look ![pixel](http://tracker.example/p.png) now")
    assert "![" not in shown.replace("\\![", "")
    assert "\\![pixel](http://tracker.example/p.png)" in shown
