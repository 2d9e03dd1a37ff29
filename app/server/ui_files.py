"""Which files the mounted Gradio UI may touch: only what was uploaded through it, into Gradio's
own upload cache, read once by the console and then deleted.

Gradio copies every file reference it finds in an event's payload into its cache and serves the
copy at `/gradio_api/file=`; it checks that the reference points into its upload folder only
when it believes it was started by `launch()`. A mounted app skips that check, so an anonymous
client could have any readable file copied and served (issue 7). `keep_path_checks` turns the
check back on, and `blocked_paths` names what must never be served even if a check is missed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradio.utils import get_upload_folder
from starlette.responses import JSONResponse

from app.server.services import BadRequest

if TYPE_CHECKING:
    import gradio as gr
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from app.server.services import Services

log = logging.getLogger(__name__)

# Every 10 minutes, delete Gradio's cached uploads older than an hour: the console consumes an
# upload right away, and anonymous uploads (which no event reads) must not pile up.
CACHE_CLEANUP = (600, 3600)
NOT_UPLOADED = "Refused a file that was not uploaded through this page; upload it again."
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_EVENT_CALLS = (
    "/gradio_api/queue/join",
    "/gradio_api/run/",
    "/gradio_api/call/",
    "/gradio_api/api/",
)


def upload_root() -> Path:
    """Gradio's upload cache (GRADIO_TEMP_DIR, else <tmp>/gradio), resolved."""
    return Path(get_upload_folder()).resolve()


def keep_path_checks(blocks: gr.Blocks) -> None:
    """Make Gradio check file references in event payloads as it does for a launched app.

    `processing_utils._check_allowed` returns early unless `blocks.has_launched`, which only
    `launch()` sets; with it set, a payload may name only files in the upload folder, and outputs
    only the upload folder, the temp dir and the working directory, minus `blocked_paths`.
    """
    blocks.has_launched = True


def blocked_paths(services: Services) -> list[str]:
    """Folders Gradio must never copy or serve from: the data dir, every knowledge-base folder,
    the working directory (where `.env` lives) and the system's secrets. A folder that holds
    Gradio's own upload cache is left out, since blocking it would refuse every upload."""
    settings = services.settings
    candidates = [settings.data_dir, settings.collections_dir, Path.cwd(), Path.home()]
    candidates += [Path(p) for p in ("/etc", "/proc", "/sys", "/root", "/var", "/dev")]
    try:
        candidates += [Path(str(c["folder"])) for c in services.collections() if c["folder"]]
    except Exception:  # the store may not be readable yet; the data dir is blocked all the same
        log.warning("could not list collections; only the data dir is blocked", exc_info=True)
    cache = upload_root()
    blocked = []
    for path in candidates:
        resolved = path.expanduser().resolve()
        if cache.is_relative_to(resolved) or Path(tempfile.gettempdir()) == resolved:
            continue
        if str(resolved) not in blocked:
            blocked.append(str(resolved))
    return blocked


def read_upload(path: str | os.PathLike[str], *, consume: bool = True) -> bytes:
    """The bytes of a file the browser uploaded through this app, which is then deleted.

    Refuses (BadRequest) anything that is not a regular file directly inside Gradio's upload
    cache: a path elsewhere, a symlink, a directory or a device. The file is opened without
    following symlinks and checked on the open descriptor, so it cannot be swapped in between.
    With `consume=False` nothing is read or deleted: a check before a batch is saved.
    """
    root = upload_root()
    try:
        parent = Path(path).parent.resolve(strict=True)
        target = parent / Path(path).name  # the folder checked is the one opened
        inside = parent.is_relative_to(root) and parent != root
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK) if inside else -1
    except OSError as exc:
        raise BadRequest(NOT_UPLOADED) from exc
    if fd < 0:
        raise BadRequest(NOT_UPLOADED)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadRequest(NOT_UPLOADED)
        if not consume:
            return b""
        data = f.read()
    target.unlink(missing_ok=True)  # the only copy left is the one saved into the collection
    return data


def names_remote_file(payload: Any) -> bool:
    """True if a file reference anywhere in `payload` has a URL for its path (walked without
    recursion, so no nesting depth can break it)."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and _SCHEME.match(path):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class LocalFilesOnly:
    """Refuse what would make Gradio fetch a URL a client names: `/gradio_api/file=<url>`, and a
    file reference with a URL path in an event's payload (Gradio downloads it, unbounded, into
    its cache before any handler runs). This UI never names a remote file, so neither is needed.

    Wraps the mounted Gradio app only, so it runs inside the server's body-size limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path.startswith("/gradio_api/file=") and _SCHEME.match(path[len("/gradio_api/file=") :]):
            await JSONResponse({"detail": "only this app's own files are served"}, 403)(
                scope, receive, send
            )
            return
        if scope["method"] != "POST" or not path.startswith(_EVENT_CALLS):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            remote = names_remote_file(json.loads(body))
        except ValueError:
            remote = False  # not JSON: Gradio answers that itself
        except RecursionError:
            remote = True  # nested deeper than any page sends: refused, not a 500
        if remote:
            await JSONResponse({"detail": "a file must be uploaded, not named by URL"}, 400)(
                scope, receive, send
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
