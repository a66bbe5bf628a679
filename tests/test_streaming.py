"""Big tensors stream block by block (threshold lowered so the test stays small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc import commit, storage
from modelvc.codec import BLOCK_ELEMENTS
from modelvc.registry import Registry
from tests.services.damage import flip_byte


@pytest.fixture
def small_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in (storage, commit):
        monkeypatch.setattr(mod, "STREAM_BYTES", 1 << 20)


def test_multi_block_tensors_stream_with_deltas(small_stream: None, reg: Registry,
                                                tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3 * BLOCK_ELEMENTS + 12345  # four blocks, the last one partial
    base = {"big": rng.standard_normal(n).astype(np.float32),
            "small": rng.standard_normal(100).astype(np.float32)}
    save_file(base, str(tmp_path / "a.safetensors"))
    ft = {k: (v + np.float32(1e-4) * rng.standard_normal(v.shape).astype(np.float32))
          for k, v in base.items()}
    block1 = slice(BLOCK_ELEMENTS, 2 * BLOCK_ELEMENTS)
    ft["big"][block1] = base["big"][block1]
    save_file(ft, str(tmp_path / "b.safetensors"))
    reg.commit(tmp_path / "a.safetensors", model="m")
    v2 = reg.commit(tmp_path / "b.safetensors", model="m")
    big = next(s for s in reg.manifest("m@v2").files[0].segments if s.tensor == "big")
    h = reg._io.header(big.id)
    assert len(h.blocks) == 4
    assert [b.mode for b in h.blocks][1] == "same"  # an unchanged block costs nothing
    assert h.ref is not None and v2.stored_size < 0.7 * v2.raw_size
    for ref, src in (("m@v1", "a"), ("m@v2", "b")):
        out = tmp_path / f"out-{src}.safetensors"
        reg.checkout(ref, out)
        assert out.read_bytes() == (tmp_path / f"{src}.safetensors").read_bytes()
    np.testing.assert_array_equal(reg.load("m@v2")["big"], ft["big"])
    assert reg.verify().ok


def test_corrupt_block_is_caught_when_streaming(small_stream: None, reg: Registry,
                                                tmp_path: Path) -> None:
    from modelvc.errors import CorruptObject

    rng = np.random.default_rng(1)
    save_file({"big": rng.standard_normal(2 * BLOCK_ELEMENTS).astype(np.float32)},
              str(tmp_path / "a.safetensors"))
    reg.commit(tmp_path / "a.safetensors", model="m")
    seg = reg.manifest("m@v1").files[0].segments[1]
    flip_byte(reg._store, seg.id, 100, 0xFF)  # inside block 0's payload
    with Registry.open(reg._layout.root) as fresh, pytest.raises(CorruptObject):
        fresh.checkout("m@v1", tmp_path / "out.safetensors")  # nothing cached: reads disk
    assert not (tmp_path / "out.safetensors").exists()
    report = reg.verify()  # bypasses the in-process block cache
    v1 = reg.resolve("m@v1")
    assert seg.id in report.corrupt and report.broken_versions == [f"m@v1 ({v1.id[:12]})"]
