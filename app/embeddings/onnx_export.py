"""Make the int8 ONNX copy of an E5 model once, into the data dir, and check it against fp32.

The transformer is exported with torch's ONNX exporter (opset 17, dynamic batch and length).
Then onnxruntime quantises it: the embedding table to int8, and every weight MatMul to
MatMulNBits with 8-bit weights in blocks of 32 and int8 compute, which quantises activations per
block of 32 values of a row. Measured on 180 XQuAD texts against fp32 (docs/performance.md):
plain dynamic int8 (one scale per activation tensor) gave mean cosine 0.9966, and a text's vector
moved with its batch company, because BERT's feed-forward outputs carry outliers (layer 4 of
e5-small peaks at 69 with a standard deviation of 0.5) that set the scale of the whole tensor;
keeping the worst of them in fp32 reached 0.9986 and still lost 0.8 point of recall@1 on the
mixed-language knowledge base; block-wise scales give 0.9999 at the same speed. The folder also
holds the tokenizer exactly as transformers builds it for the model (saved as tokenizer.json, so
serving needs neither transformers nor torch) and `kbchat_onnx.json`, which records what was made
and the cosine the copy reached against fp32 on built-in multilingual sentences. Only the pooling
E5 uses (mean over the attention mask) is supported; anything else is refused here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from app.embeddings.resolve import ResolvedModel

log = logging.getLogger(__name__)
INFO_FILE = "kbchat_onnx.json"
FORMAT = 3  # bump when the export or quantisation changes, so old copies are made again
QUANTISATION = "int8 embedding table; MatMulNBits 8-bit weights, blocks of 32, int8 compute"
MIN_COSINE = 0.99  # the quality bar of issue 12: below it, the int8 copy is not used by default
CHECK_SENTENCES = (  # languages and scripts of several families, queries and passages
    "query: When was the company founded?",
    "passage: The warranty covers defects in materials and workmanship for three years.",
    "query: Wie lange dauert es, den Akku vollständig aufzuladen?",
    "passage: La batería tiene una garantía de dos años a partir de la fecha de compra.",
    "query: 电池充满电需要多长时间？",
    "passage: ロボットは雨の日には自動的に充電ステーションに戻ります。",
    "query: كم مرة يجب أن أستبدل الشفرات؟",
    "passage: Ο ρομποτικός χλοοκοπτικός λειτουργεί αθόρυβα και μπορεί να κόβει τη νύχτα.",
    "query: किस वाई-फाई बैंड का समर्थन करता है?",
    "passage: Робот поднимается с земли — лезвия останавливаются за полсекунды.",
    "query: hello",
)


class OnnxExportError(RuntimeError):
    """The model cannot be exported or quantised; the message says why and what to use instead."""


def onnx_dir(models_dir: Path, model: ResolvedModel) -> Path:
    """One folder per model files and export format: a changed model gets a new copy."""
    digest = hashlib.sha256(f"{FORMAT}|{model.model_id}|{model.weights}".encode())
    for path in sorted(p for p in model.path.rglob("*") if p.is_file()):
        digest.update(f"|{path.relative_to(model.path)}:{path.stat().st_size}".encode())
    config = model.path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in model.model_id)[-80:]
    return models_dir / "onnx-int8" / f"{slug}-{digest.hexdigest()[:12]}"


def read_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None
    if not (folder / "model.onnx").is_file() or not (folder / "tokenizer.json").is_file():
        return None
    return info


def check_pooling(model: ResolvedModel) -> None:
    """E5 means over tokens; a model pooled otherwise would get wrong vectors from us."""
    path = model.path / "1_Pooling" / "config.json"
    if not path.is_file():
        return  # a plain transformers folder: sentence-transformers would mean-pool it too
    config = json.loads(path.read_text(encoding="utf-8"))
    mode = config.get("pooling_mode")
    mean = mode == "mean" if mode is not None else bool(config.get("pooling_mode_mean_tokens"))
    if not mean:
        raise OnnxExportError(
            f"{model.model_id} does not use mean pooling ({path}); the int8 encoder supports "
            "only E5's mean pooling: set KBCHAT_EMBEDDING_BACKEND=torch"
        )


def prepare_onnx(models_dir: Path, model: ResolvedModel) -> tuple[Path, dict[str, Any]]:
    """The int8 folder for this model, made now into the data dir if missing (tens of seconds,
    once). A copy made beside a local model folder (`<its parent>/onnx-int8/`, e.g. baked into an
    image next to the model) is used as it is."""
    from filelock import FileLock

    for place in (models_dir, model.path.parent):
        found = onnx_dir(place, model)
        info = read_info(found)
        if info is not None:
            return found, info
    folder = onnx_dir(models_dir, model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # replicas starting together make it once
        info = read_info(folder)
        if info is not None:
            return folder, info
        check_pooling(model)
        log.info("making the int8 ONNX copy of %s in %s (once)", model.model_id, folder)
        work = Path(tempfile.mkdtemp(prefix=".making-", dir=folder.parent))
        try:
            info = _export(model, work)
            if folder.exists():
                shutil.rmtree(folder)
            work.rename(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder, info


def _export(model: ResolvedModel, work: Path) -> dict[str, Any]:
    try:
        import onnx  # noqa: F401  (quantisation needs them; say so before torch's long export)
        import onnx_ir  # noqa: F401
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise OnnxExportError(
            f"making the int8 encoder needs {exc.name}: `pip install onnx onnx-ir` (kbchat "
            "installs them), "
            "or set KBCHAT_EMBEDDING_BACKEND=torch"
        ) from exc

    tokenizer = AutoTokenizer.from_pretrained(str(model.path), local_files_only=True)
    network = AutoModel.from_pretrained(str(model.path), local_files_only=True).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]

    sample = tokenizer(list(CHECK_SENTENCES[:2]), padding=True, return_tensors="pt")
    fp32 = work / "model.fp32.onnx"
    axes = {0: "batch", 1: "tokens"}
    try:
        with torch.no_grad():
            torch.onnx.export(
                Hidden(network),
                (sample["input_ids"], sample["attention_mask"]),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["hidden"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
                opset_version=17,
                dynamo=False,
            )
        _quantise(fp32, work)
    except Exception as exc:  # the exporters raise many kinds; the user needs one message
        raise OnnxExportError(
            f"exporting {model.model_id} to int8 ONNX failed ({type(exc).__name__}: {exc}); "
            "set KBCHAT_EMBEDDING_BACKEND=torch"
        ) from exc
    tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
    reference = _torch_vectors(model)
    fp32.unlink()
    from app.embeddings.onnx_encoder import OnnxRunner

    quantised = OnnxRunner(work, model.max_tokens, pad_id=_pad_id(tokenizer)).encode(
        list(CHECK_SENTENCES)
    )
    cosines = (quantised * reference).sum(axis=1)
    info = {
        "format": FORMAT,
        "model_id": model.model_id,
        "weights": model.weights,
        "quantisation": QUANTISATION,
        "max_tokens": model.max_tokens,
        "dimension": int(reference.shape[1]),
        "pad_id": _pad_id(tokenizer),
        "min_cosine_vs_fp32": round(float(cosines.min()), 5),
        "mean_cosine_vs_fp32": round(float(cosines.mean()), 5),
        "torch": torch.__version__,
    }
    (work / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _quantise(fp32: Path, work: Path) -> None:
    """Embedding table: int8 per tensor; every weight MatMul: MatMulNBits, 8-bit weights in
    blocks of 32 with int8 compute (accuracy level 4), so activations are quantised per block of
    32 values of a row, not per tensor."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    table = work / "model.gather8.onnx"
    quantize_dynamic(
        str(fp32), str(table), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"]
    )
    config = DefaultWeightOnlyQuantConfig(
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        bits=8,
        op_types_to_quantize=("MatMul",),
        quant_axes=(("MatMul", 0),),
    )
    quantiser = MatMulNBitsQuantizer(onnx.load(str(table)), algo_config=config)
    quantiser.process()
    quantiser.model.save_model_to_file(str(work / "model.onnx"), False)
    table.unlink()


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def _torch_vectors(model: ResolvedModel) -> np.ndarray:
    """What the torch backend gives for the check sentences: the reference int8 must match."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model.path), device="cpu", local_files_only=True)
    st.max_seq_length = model.max_tokens
    vectors = st.encode(
        list(CHECK_SENTENCES), batch_size=1, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)
