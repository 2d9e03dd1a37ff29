"""The script behind `/widget.js`: the vendored markdown parser and sanitiser, then widget.js.

Each library runs in its own function scope with a private CommonJS `module`, so it defines no
page global and cannot clash with (or be replaced by) a copy the host page loads itself. The
widget reads them from the `KBCHAT_VENDOR` parameter of its wrapper; served alone, widget.js
finds no such parameter and shows answers as plain text. One request, same origin, no CDN.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

# name in KBCHAT_VENDOR -> file under static/vendor/ (licences next to them, see its README)
VENDOR = {"marked": "marked.umd.js", "DOMPurify": "purify.min.js"}
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)  # maps are not shipped


@dataclass(frozen=True)
class Bundle:
    """The script text and its ETag (a content hash, so a new release invalidates caches)."""

    text: str
    etag: str


def _module(name: str, source: str) -> str:
    """A library as an expression: its UMD header sees `module` and exports into it."""
    body = _SOURCE_MAP.sub("", source)
    return (
        f"/* ---- {name} (vendored, see /widget.js's licence notes) ---- */\n"
        "(function () { var module = { exports: {} }; var exports = module.exports;"
        " var define = undefined;\n"
        f"{body}\n;return module.exports; }})()"
    )


def build_widget_bundle(static: Path) -> Bundle:
    """Read the files once (at app creation); the result is served as is."""
    vendor = static / "vendor"
    parts = ",\n".join(
        f"{name!r}: {_module(name, (vendor / file).read_text(encoding='utf-8'))}"
        for name, file in VENDOR.items()
    )
    widget = (static / "widget.js").read_text(encoding="utf-8")
    text = (
        "/*! kbchat widget. Bundled: marked 18.2.1 (MIT, (c) MarkedJS, Christopher Jeffrey);"
        " DOMPurify 3.5.0 (Apache-2.0 or MPL-2.0, (c) Cure53). */\n"
        f"(function (KBCHAT_VENDOR) {{\n{widget}\n}})({{\n{parts}\n}});\n"
    )
    etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
    return Bundle(text=text, etag=etag)
