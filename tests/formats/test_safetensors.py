from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from modelvc.errors import InvalidModelFile
from modelvc.formats import plan_file, read_safetensors_header

from .conftest import assert_exact, fuzz_settings, mutate, plan_or_refuse


def check_tensors(path: Path) -> None:
    """Tensor segments hold exactly the tensors' bytes, as loaded by safetensors itself."""
    plan = plan_file(path)
    assert plan.format == "safetensors"
    assert_exact(path, plan)
    data = path.read_bytes()
    loaded = load_file(str(path))
    assert {s.name for s in plan.tensors} == set(loaded)
    for seg in plan.tensors:
        arr = loaded[seg.name or ""]
        assert seg.shape == arr.shape
        assert data[seg.offset : seg.end] == arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def test_minilm(minilm: Path) -> None:
    check_tensors(minilm)
    plan = plan_file(minilm)
    assert plan.info["tensor_count"] == len(plan.tensors) > 100
    assert plan.segments[0].kind == "bytes" and plan.segments[0].offset == 0


def test_tiny_bert_single_and_sharded(bert_dir: Path) -> None:
    check_tensors(bert_dir / "single.safetensors")
    assert plan_file(bert_dir / "single.safetensors").info["metadata"] == {"format": "pt"}
    shards = sorted((bert_dir / "sharded").glob("*.safetensors"))
    assert len(shards) > 1
    index = bert_dir / "sharded" / "model.safetensors.index.json"
    assert plan_file(index).format == "json"
    weight_map = json.loads(index.read_text())["weight_map"]
    seen: set[str] = set()
    for shard in shards:
        check_tensors(shard)
        names = {s.name for s in plan_file(shard).tensors}
        assert all(weight_map[n] == shard.name for n in names if n)
        seen |= {n for n in names if n}
    assert seen == set(weight_map)


def test_padding_zero_sized_and_packed_dtypes(tmp_path: Path) -> None:
    # Hand-built: padded header, a zero-sized tensor, packed F4 / F6 tensors (defined by
    # the format, unknown to the codecs: opaque), tensors out of header order.
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "z": {"dtype": "F4", "shape": [4], "data_offsets": [8, 10]},
        "e": {"dtype": "I64", "shape": [0], "data_offsets": [10, 10]},
        "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [13, 17]},
        "s": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [10, 13]},
        "__metadata__": {"k": "v"},
    }
    raw = json.dumps(header).encode() + b"    "
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(range(17)))
    plan = plan_file(path)
    assert_exact(path, plan)
    assert [s.name for s in plan.tensors] == ["a", "e", "b"]
    assert plan.info["opaque_tensors"] == ["s", "z"]
    assert read_safetensors_header(path)["__metadata__"] == {"k": "v"}
    with safe_open(str(path), "np") as f:  # and the library reads it
        assert sorted(f.keys()) == ["a", "b", "e", "s", "z"]


def write(
    tmp_path: Path, header: object, body: bytes = b"\0" * 16, raw: bytes | None = None
) -> Path:
    data = json.dumps(header).encode() if raw is None else raw
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(data)) + data + body)
    return path


def f32(begin: int, end: int, shape: list[int]) -> dict[str, object]:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def _lib_refuses(path: Path) -> bool:
    try:
        with safe_open(str(path), "np"):
            return False
    except Exception:
        return True


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({"a": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, 8,
         "unknown dtype 'F99'"),
        ({"a": f32(0, 8, [2])}, 12, "4 trailing bytes after the last tensor"),
        ({}, 3, "3 trailing bytes"),
        ({"a": f32(0, 4, [1]), "b": f32(8, 12, [1])}, 12, "4 bytes after tensor 'a'"),
        ({"a": f32(4, 8, [1])}, 8, "4 bytes before the first tensor"),
        ({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, 2, "not whole bytes"),
    ],
)
def test_what_the_safetensors_library_refuses_is_refused(
        tmp_path: Path, header: dict[str, object], body: int, message: str) -> None:
    path = write(tmp_path, header, body=bytes(body))
    assert _lib_refuses(path)
    with pytest.raises(InvalidModelFile, match=message) as info:
        plan_file(path)
    assert "mv bad.safetensors bad.safetensors.raw" in str(info.value)


@pytest.mark.parametrize(
    ("header", "raw", "message"),
    [
        ({}, b"{not json", "not UTF-8 JSON"),
        ({}, b"\xff\xfe{}", "not UTF-8 JSON"),
        ([1, 2], None, "expected an object"),
        ({"a": f32(0, 8, [2]), "b": f32(4, 12, [2])}, None, "overlap"),
        ({"a": f32(0, 80, [20])}, None, "out of range"),
        ({"a": f32(8, 4, [1])}, None, "out of range"),
        ({"a": f32(0, 12, [2])}, None, "needs 8"),
        ({"a": f32(0, 8, [-2])}, None, "non-negative"),
        ({"a": f32(0, 8, [2.0])}, None, "non-negative"),
        ({"a": {"dtype": "F32", "shape": [2]}}, None, "missing 'data_offsets'"),
        ({"a": {"shape": [2], "data_offsets": [0, 8]}}, None, "missing 'dtype'"),
        ({"__metadata__": {"k": 1}}, None, "__metadata__"),
    ],
)
def test_malformed_header(tmp_path: Path, header: object, raw: bytes | None, message: str) -> None:
    path = write(tmp_path, header, raw=raw)
    with pytest.raises(InvalidModelFile, match=message) as info:
        plan_file(path)
    assert str(path) in str(info.value) and "hint:" in str(info.value)


def test_duplicate_keys(tmp_path: Path) -> None:
    raw = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {}}'
    with pytest.raises(InvalidModelFile, match="duplicate"):
        plan_file(write(tmp_path, None, raw=raw))


def test_short_and_oversized(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(InvalidModelFile, match="shorter than the 8-byte"):
        plan_file(path)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(InvalidModelFile, match="larger than the file"):
        plan_file(path)
    path.write_bytes(struct.pack("<Q", 200_000_000) + b"{}")
    with pytest.raises(InvalidModelFile, match="exceeds"):
        plan_file(path)
    path.write_bytes(b"\xff" * 8)
    with pytest.raises(InvalidModelFile):
        plan_file(path)


@pytest.fixture(scope="module")
def small_valid(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("st") / "small.safetensors"
    tensors = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(3, dtype=np.int64),
        "h": np.zeros((2, 2), dtype=np.float16),
    }
    save_file(tensors, str(path), metadata={"m": "x"})
    return path.read_bytes()


@fuzz_settings
@given(data=st.data())
def test_fuzz_mutations(tmp_path: Path, small_valid: bytes, data: st.DataObject) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(mutate(data, small_valid))
    plan_or_refuse(path)


_dims = st.lists(st.integers(-2, 4) | st.floats(0, 3) | st.just(True), max_size=3)
_entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "BF16", "U8", "I64", "F4", "X", 7]),
        "shape": _dims | st.just("2"),
        "data_offsets": st.lists(st.integers(-4, 40), min_size=0, max_size=3),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(st.sampled_from(["a", "b", "c", "__metadata__"]), _entry, max_size=4),
    body=st.integers(0, 48),
)
def test_fuzz_headers(header: dict[str, object], body: int) -> None:
    """Structured fuzzing of the JSON header: plan exactly, or fail with InvalidModelFile,
    exactly when the safetensors library refuses the file too."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), header, body=bytes(range(body)))
        assert (plan_or_refuse(path) is None) == _lib_refuses(path), header
