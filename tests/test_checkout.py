"""Checkout: bit-exact through delta chains and exports, and a corrupt object is named."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.codec.buffers import POOL
from modelvc.errors import CorruptObject
from modelvc.registry import Registry
from tests.services.damage import flip_byte


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even F32 -> BF16 bits, as an exporter (torch .to(bfloat16)) does."""
    u = a.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_exports_of_chain_ends_check_out_bit_exact(reg: Registry, tmp_path: Path) -> None:
    """An fp32 chain three links deep, then a bf16 export of its end: the export decodes
    through the fp32 chain and its cast link in one pass, block after block."""
    rng = np.random.default_rng(0)
    n = BLOCK_ELEMENTS + 4321  # two blocks
    w = rng.standard_normal(n).astype(np.float32)
    step = (1e-3 * rng.standard_normal(n)).astype(np.float32)
    files = []
    for i in range(5):
        w = (w + step * np.float32(1 + 0.1 * i)).astype(np.float32)
        path = tmp_path / f"ck{i}.safetensors"
        save_file({"w": w, "b": w[:77].copy()}, str(path))
        reg.commit(path, model="m", branch="train")
        files.append(path)
    export = tmp_path / "bf16.safetensors"
    bits = _bf16(w)
    bits[::1000] ^= 1  # an exporter that rounds a few values differently
    raw = bits.view(np.uint8).tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [n],
                               "data_offsets": [0, len(raw)]}}).encode()
    export.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    v = reg.commit(export, model="m", branch="export", parent="m@train")
    assert v.stored_size < 0.02 * v.raw_size
    for ref, src in [("m@train", files[-1]), ("m@export", export)]:
        with Registry.open(reg._layout.root) as fresh:  # nothing decoded before
            out = tmp_path / f"out-{src.name}"
            fresh.checkout(ref, out)
            assert out.read_bytes() == src.read_bytes()
    POOL.clear()


def test_a_corrupt_raw_plane_is_named_and_nothing_is_written(reg: Registry,
                                                             tmp_path: Path) -> None:
    """Mantissa planes are stored raw (no zstd checksum over them): the file's sha256
    catches a flipped bit, and checkout names the object before anything appears."""
    rng = np.random.default_rng(1)
    src = tmp_path / "a.safetensors"
    save_file({"w": rng.standard_normal(100_000).astype(np.float32)}, str(src))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
    block = reg._io.header(seg.id).blocks[0]
    payload_head = 2 + 4 * 4  # itemsize, raw mask, 4 plane lengths
    data = reg._store.get(seg.id)
    assert data[block.offset + 1] & 1, "plane 0 of random floats is stored raw"
    flip_byte(reg._store, seg.id, block.offset + payload_head + 1234, 0x10)
    dest = tmp_path / "out"
    with Registry.open(reg._layout.root) as fresh, pytest.raises(CorruptObject) as err:
        fresh.checkout("m@v1", dest)
    assert seg.id[:12] in str(err.value)
    assert not dest.exists() or not any(dest.rglob("*.safetensors"))
