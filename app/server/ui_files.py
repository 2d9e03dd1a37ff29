"""Which files the mounted Gradio UI may touch: only what was uploaded through it, into Gradio's
own upload cache, read once by the admin tab and then deleted.

Gradio copies every file reference it finds in an event's payload into its cache and serves the
copy at `/gradio_api/file=`; it checks that the reference points into its upload folder only
when it believes it was started by `launch()`. A mounted app skips that check, so an anonymous
client could have any readable file copied and served (issue 7). `keep_path_checks` turns the
check back on, and `blocked_paths` names what must never be served even if a check is missed.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gradio.utils import get_upload_folder

from app.server.services import BadRequest

if TYPE_CHECKING:
    import gradio as gr

    from app.server.services import Services

log = logging.getLogger(__name__)

# Every 10 minutes, delete Gradio's cached uploads older than an hour: the admin tab consumes an
# upload right away, and anonymous uploads (which no event reads) must not pile up.
CACHE_CLEANUP = (600, 3600)
NOT_UPLOADED = "Refused a file that was not uploaded through this page; upload it again."


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
    given = Path(path)
    root = upload_root()
    try:
        parent = given.parent.resolve(strict=True)
        inside = parent.is_relative_to(root) and parent != root
        fd = os.open(given, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK) if inside else -1
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
    given.unlink(missing_ok=True)  # the only copy left is the one saved into the collection
    return data
