"""formats/memory.py: bytes handed to `commit_files` are planned as the same file on
disk would be (the safetensors planner reads only the header from memory; a large gap
of opaque bytes between tensors is cut by its content, as on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelvc.errors import InvalidModelFile
from modelvc.formats.chunking import MAX_SIZE
from modelvc.formats.detect import plan_file
from modelvc.formats.memory import mem_files, tensor_bytes


def _file(header: dict[str, object], data: bytes) -> bytes:
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + data


def _same_plan(tmp_path: Path, raw: bytes) -> None:
    disk = tmp_path / "m.safetensors"
    disk.write_bytes(raw)
    (mem,) = mem_files({"m.safetensors": raw})
    assert mem.plan == plan_file(disk)
    assert b"".join(mem.pieces) == raw


def test_a_state_dicts_bytes_plan_as_on_disk(tmp_path: Path) -> None:
    _same_plan(tmp_path, tensor_bytes({"a": np.arange(1000, dtype=np.float32),
                                       "b": np.ones((3, 4), np.int64)}))


def test_a_large_opaque_gap_is_cut_by_its_content(tmp_path: Path) -> None:
    """A tensor of a dtype modelvc does not decode (packed F4) is opaque bytes; larger
    than MAX_SIZE it is cut by content (CDC), so its bytes must be there to plan it."""
    n = MAX_SIZE * 3
    opaque = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    w = np.arange(64, dtype=np.float32).tobytes()
    raw = _file({"packed": {"dtype": "F4", "shape": [n * 2], "data_offsets": [0, n]},
                 "w": {"dtype": "F32", "shape": [64], "data_offsets": [n, n + len(w)]}},
                opaque + w)
    _same_plan(tmp_path, raw)
    (mem,) = mem_files({"m.safetensors": raw})
    assert sum(s.kind == "bytes" for s in mem.plan.segments) > 2  # header + CDC chunks


def test_a_bad_header_is_refused_as_on_disk(tmp_path: Path) -> None:
    raw = (10**6).to_bytes(8, "little") + b"{}"
    with pytest.raises(InvalidModelFile, match="larger than the file"):
        mem_files({"m.safetensors": raw})
    truncated = tensor_bytes({"a": np.arange(100, dtype=np.float32)})[:-4]
    with pytest.raises(InvalidModelFile):
        mem_files({"m.safetensors": truncated})
