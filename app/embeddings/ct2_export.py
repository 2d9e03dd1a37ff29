"""Make the int8 CTranslate2 copy of an E5 model once, into the data dir, and check it.

CTranslate2 (OpenNMT's inference engine, MIT) converts the transformers model and quantises its
linear layers to int8 with one scale per output channel, and quantises activations with one
scale per *token* (row) at run time. That per-row scale is what plain dynamic int8 on
onnxruntime lacks (one scale per tensor, so a few outlier activation channels crush the rest):
measured on XQuAD dev (docs/performance.md) it loses 0.4 point of recall@1 on the mixed-language
knowledge base and 0.3 on the English corpus against fp32 (the bar is 0.5) and embeds a question
in about half the CPU time of the ONNX copy, passages 1.7 times as fast. The folder also holds the
tokenizer exactly as transformers builds it (tokenizer.json: serving needs neither transformers
nor torch) and `kbchat_ct2.json`, which records what was made and the cosine the copy reached
against fp32 on built-in multilingual sentences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.embeddings.onnx_export import (
    CHECK_SENTENCES,
    OnnxExportError,
    copy_dir,
    prepare_copy,
    read_record,
    torch_vectors,
)
from app.embeddings.resolve import ResolvedModel

INFO_FILE = "kbchat_ct2.json"
FORMAT = 1  # bump when the conversion changes, so old copies are made again
KIND = "ct2-int8"


def ct2_dir(models_dir: Path, model: ResolvedModel) -> Path:
    return copy_dir(models_dir, model, KIND, f"{FORMAT}|{engine_version()}")


def prepare_ct2(models_dir: Path, model: ResolvedModel) -> tuple[Path, dict[str, Any]]:
    """The copy for this model, made now if missing (about 20 s, once); one made beside a
    local model folder (`<its parent>/ct2-int8/`) is used as it is."""
    return prepare_copy(
        (ct2_dir(models_dir, model), ct2_dir(model.path.parent, model)), model, read_info, _convert
    )


def read_info(folder: Path) -> dict[str, Any] | None:
    return read_record(folder, INFO_FILE, FORMAT, ("model.bin", "tokenizer.json"))


def engine_version() -> str:
    """The copy is made by this version of the engine: another one makes it again."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ctranslate2")
    except PackageNotFoundError:
        return "none"


def _convert(model: ResolvedModel, work: Path) -> dict[str, Any]:
    try:
        from ctranslate2.converters import TransformersConverter
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise OnnxExportError(
            f"making the int8 encoder needs {exc.name}: `pip install ctranslate2` (kbchat "
            "installs it), or set KBCHAT_EMBEDDING_BACKEND=onnx-int8 or torch"
        ) from exc
    try:
        TransformersConverter(str(model.path)).convert(str(work), quantization="int8", force=True)
    except Exception as exc:  # the converter raises many kinds; the user needs one message
        raise OnnxExportError(
            f"converting {model.model_id} to CTranslate2 int8 failed ({type(exc).__name__}: "
            f"{exc}); set KBCHAT_EMBEDDING_BACKEND=onnx-int8 or torch"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(model.path), local_files_only=True)
    tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
    reference = torch_vectors(model)
    from app.embeddings.ct2_encoder import Ct2Runner

    quantised = Ct2Runner(work, model.max_tokens).encode(list(CHECK_SENTENCES))
    cosines = (quantised * reference).sum(axis=1)
    info = {
        "format": FORMAT,
        "model_id": model.model_id,
        "weights": model.weights,
        "quantisation": "ctranslate2 int8 (per-channel weights, per-token activations)",
        "ctranslate2": engine_version(),
        "max_tokens": model.max_tokens,
        "dimension": int(reference.shape[1]),
        "min_cosine_vs_fp32": round(float(cosines.min()), 5),
        "mean_cosine_vs_fp32": round(float(cosines.mean()), 5),
    }
    (work / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
