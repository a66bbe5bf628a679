from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from modelvc.errors import Corrupt, InvalidModelFile, PathNotFound
from modelvc.formats import FilePlan, Segment, iter_segment_bytes, plan_file, verify_plan
from modelvc.formats.chunking import MAX_SIZE

from .conftest import assert_exact


def test_torch_checkpoints_are_opaque_pickles(bert_dir: Path) -> None:
    for name, container in (("model.pt", "zip"), ("legacy.bin", "pickle")):
        plan = plan_file(bert_dir / name)
        assert (plan.format, plan.info["container"]) == ("pickle", container)
        assert all(s.kind == "bytes" for s in plan.segments)
        assert_exact(bert_dir / name, plan)


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Touch:
        def __reduce__(self) -> tuple[object, tuple[Path]]:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Touch(), protocol=4))
    plan = plan_file(path)
    assert plan.format == "pickle" and not marker.exists()
    assert_exact(path, plan)


def test_small_files(tmp_path: Path, bert_dir: Path) -> None:
    cases = {
        "config.json": (json.dumps({"a": 1}).encode(), "json"),
        "broken.json": (b'{"a": ', "text"),
        "vocab.txt": ("héllo\nworld\n".encode(), "text"),
        "weights.bin": (bytes([0, 1, 2, 255, 254]) * 10, "binary"),
        "empty.txt": (b"", "text"),
    }
    for name, (data, fmt) in cases.items():
        (tmp_path / name).write_bytes(data)
        plan = plan_file(tmp_path / name)
        assert plan.format == fmt, name
        assert len(plan.segments) == (1 if data else 0)
        assert_exact(tmp_path / name, plan)
    for path in (bert_dir / "sharded").iterdir():
        assert_exact(path, plan_file(path))


def test_large_files_are_chunked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "big.dat"
    path.write_bytes(rng.integers(0, 256, 3 * MAX_SIZE, dtype=np.uint8).tobytes())
    plan = plan_file(path)
    assert plan.format == "binary" and len(plan.segments) > 3
    assert max(s.length for s in plan.segments) <= MAX_SIZE
    assert_exact(path, plan)
    text = tmp_path / "big.json"
    text.write_text(json.dumps(["x" * 100] * 60_000))
    plan = plan_file(text)
    assert plan.format == "json" and len(plan.segments) > 1
    assert_exact(text, plan)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(PathNotFound):
        plan_file(tmp_path / "missing.safetensors")
    with pytest.raises(PathNotFound):
        plan_file(tmp_path)
    bad = FilePlan("binary", 10, (Segment(0, 4, "bytes"), Segment(5, 5, "bytes")), {})
    with pytest.raises(Corrupt, match="starts at 5, expected 4"):
        verify_plan(bad)
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    plan = plan_file(path)
    path.write_bytes(b"hello world")
    with pytest.raises(InvalidModelFile, match="planned with 5"):
        list(iter_segment_bytes(path, plan))
