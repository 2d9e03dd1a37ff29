"""The full-page assistant at /a/{id}: a standalone, shareable page that is nothing but the
widget (widget.js with data-mode="page") filling the viewport, with the assistant's name in its
<title>, its colour and theme, and <html lang> from its default language.

The page holds no secret: its chats name the assistant in X-Kbchat-Assistant, honoured for
same-origin requests only (app.server.access.page_caller). Every value that reaches the HTML is
escaped, and a strict Content-Security-Policy allows only this server's scripts: the page has no
inline script or style at all.

The console's preview (`page_html(..., preview=True)`) is the same page with the assistant's widget
configuration inline, as a JSON data block (not a script: CSP lets the browser parse it, never
run it), so it shows the assistant as saved, full page on or off, never from a stale cache."""

from __future__ import annotations

import json
from html import escape

from app.server.assistant_schema import AssistantSettings, WidgetConfig

# img-src https: for an avatar on another site (AssistantSettings allows https avatars); data:
# only for the empty favicon ("data:,"), so a page without an avatar asks for no /favicon.ico
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cache-Control": "no-cache",
}
PREVIEW_HEADERS = {**HEADERS, "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
_THEME_SCHEME = {"auto": "light dark", "light": "light", "dark": "dark"}
_RTL = {"ar", "he", "fa", "ur"}  # as widget.js: each message also gets dir="auto"


def page_html(assistant: str, settings: AssistantSettings, preview: bool = False) -> str:
    """The page for an assistant that enabled `fullpage`; every value escaped for HTML. With
    `preview`, the widget's configuration comes inline (see the module's docstring)."""
    title = escape(settings.name.strip() or assistant)
    attrs = {
        "src": "/widget.js",
        "data-mode": "page",
        "data-assistant": assistant,
        "data-title": settings.name.strip() or assistant,
        "data-color": settings.color,
        "data-theme": settings.theme,
    }
    script = " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items())
    lang = settings.default_language
    direction = "rtl" if lang.split("-")[0].lower() in _RTL else "ltr"
    return (
        "<!doctype html>\n"
        f'<html lang="{escape(lang)}" dir="{direction}">\n<head>\n'
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">\n'
        f'<meta name="color-scheme" content="{_THEME_SCHEME[settings.theme]}">\n'
        f'<meta name="theme-color" content="{escape(settings.color)}">\n'
        f'<link rel="icon" href="{escape(settings.avatar or "data:,")}">\n'
        f"<title>{title}</title>\n"
        f"{_inline_config(assistant, settings) if preview else ''}"
        f"<script {script} defer></script>\n"
        "</head>\n<body>\n"
        f"<noscript>{title}: this chat needs JavaScript.</noscript>\n"
        "</body>\n</html>\n"
    )


def _inline_config(assistant: str, settings: AssistantSettings) -> str:
    """WidgetConfig as a JSON data block; <, > and & escaped so no value can close the tag."""
    data = json.dumps(WidgetConfig.of(assistant, settings).model_dump(), ensure_ascii=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        data = data.replace(char, code)
    return f'<script type="application/json" id="kbchat-preview-config">{data}</script>\n'


def not_found_html() -> str:
    """The same page for an unknown assistant and a disabled one: nothing tells them apart."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Not found</title>\n</head>\n<body>\n<h1>Not found</h1>\n"
        "<p>There is no chat at this address.</p>\n</body>\n</html>\n"
    )
