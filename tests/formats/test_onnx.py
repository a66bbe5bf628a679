from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from modelvc.errors import InvalidModelFile
from modelvc.formats import plan_file

from .conftest import assert_exact, fuzz_settings, mutate, plan_or_refuse


def check_initializers(path: Path) -> int:
    """Every main-graph initializer that has a byte-exact payload is a tensor segment
    holding exactly its little-endian data; returns how many there were."""
    plan = plan_file(path)
    assert plan.format == "onnx"
    assert_exact(path, plan)
    data = path.read_bytes()
    by_name = {s.name: s for s in plan.tensors}
    model = onnx.load(str(path))
    count = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        byte_exact = init.raw_data or (init.data_type == TensorProto.FLOAT and init.float_data)
        if not byte_exact:
            assert init.name not in by_name
            continue
        seg = by_name[init.name]
        assert seg.shape == arr.shape
        assert data[seg.offset : seg.end] == arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        count += 1
    return count


def test_sklearn_models(onnx_dir: Path) -> None:
    assert check_initializers(onnx_dir / "mlp.onnx") == 4  # two weight matrices, two biases
    check_initializers(onnx_dir / "logreg.onnx")  # coefficients live in node attributes
    info = plan_file(onnx_dir / "mlp.onnx").info
    assert info["producer"] == "skl2onnx" and "ai.onnx.ml" in info["opset"]


def test_torch_export(onnx_dir: Path) -> None:
    path = onnx_dir / "torch.onnx"
    if not path.exists():
        pytest.skip("torch.onnx.export is unavailable here")
    assert check_initializers(path) == 4


def _subgraph_model() -> onnx.ModelProto:
    """Initializers with a duplicate name, an If with initializers in both branches,
    a Constant with a tensor attribute, and an int64_data tensor (kept as bytes)."""
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    branch = []
    for tag in ("then", "else"):
        init = numpy_helper.from_array(np.full((3,), 2.0, dtype=np.float64), "w")
        out = helper.make_tensor_value_info(f"{tag}_y", TensorProto.DOUBLE, [3])
        node = helper.make_node("Identity", ["w"], [f"{tag}_y"])
        branch.append(helper.make_graph([node], tag, [], [out], initializer=[init]))
    const = helper.make_node(
        "Constant", [], ["c"], name="k",
        value=numpy_helper.from_array(np.array([1, 2], dtype=np.int16)),
    )  # fmt: skip
    if_node = helper.make_node("If", ["cond"], ["y"], name="iff", then_branch=branch[0],
                               else_branch=branch[1])  # fmt: skip
    ints = helper.make_tensor("ints", TensorProto.INT64, [2], [5, 7])
    dup = numpy_helper.from_array(np.zeros((1,), dtype=np.float16), "w")
    graph = helper.make_graph(
        [const, if_node], "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3])],
        initializer=[w, ints, dup],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_subgraphs_constants_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "sub.onnx"
    onnx.save(_subgraph_model(), str(path))
    plan = plan_file(path)
    assert_exact(path, plan)
    tensors = {s.name: (s.dtype, s.shape) for s in plan.tensors}
    assert tensors == {
        "w": ("F32", (2, 3)),
        "dup2/w": ("F16", (1,)),
        "k/value": ("I16", (2,)),
        "iff/then_branch/w": ("F64", (3,)),
        "iff/else_branch/w": ("F64", (3,)),
    }


def test_external_data_is_noted(tmp_path: Path) -> None:
    model = _subgraph_model()
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)  # fmt: skip
    plan = plan_file(path)
    assert_exact(path, plan)
    assert plan.info["external_data_tensors"] >= 1


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated(onnx_dir: Path, tmp_path: Path, cut: float) -> None:
    data = (onnx_dir / "mlp.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InvalidModelFile, match=str(path)):
        plan_file(path)


def test_random_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    for seed in range(20):
        path.write_bytes(os.urandom(1000 + seed))
        with pytest.raises(InvalidModelFile, match="not a valid ONNX model"):
            plan_file(path)
    path.write_bytes(b"")
    with pytest.raises(InvalidModelFile, match="empty"):
        plan_file(path)


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    return _subgraph_model().SerializeToString()


@fuzz_settings
@given(data=st.data())
def test_fuzz_mutations(tmp_path: Path, small_onnx: bytes, data: st.DataObject) -> None:
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(mutate(data, small_onnx))
    plan = plan_or_refuse(path)
    if plan is None:
        return
    names = [s.name for s in plan.tensors]
    assert len(set(names)) == len(names)
