"""Mutation fuzzing of what reads untrusted bytes: the safetensors and ONNX planners (a
commit of a hostile file) and the OIP request decoder (a hostile inference request).
Each mutated input must be planned/decoded or refused with the project's own error,
never crash with anything else."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelvc.errors import ModelvcError
from modelvc.formats.onnx import plan_onnx
from modelvc.formats.safetensors import plan_safetensors
from modelvc.serving.protocol import BadRequest, parse_infer

from .conftest import EXAMPLES

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _safetensors() -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    return bytes(save({"w": rng.standard_normal((8, 4)).astype(np.float32),
                       "b": np.arange(4, dtype=np.int64)}, metadata={"k": "v"}))


def _onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    f = helper.make_tensor("F", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    node = helper.make_node("MatMul", ["X", "W"], ["Y"])
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])],
                              initializer=[w, f])
    return bytes(onnx.helper.make_model(graph).SerializeToString())


SAFETENSORS, ONNX = _safetensors(), _onnx()


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """SEED with a few byte flips, a cut, a splice or a length field rewritten."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "u64"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "u64" and len(data) >= 8:
            data[:8] = draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
    return bytes(data)


def _plan(planner: object, tmp: Path, data: bytes) -> None:
    path = tmp / "m.bin"
    path.write_bytes(data)
    # Refused with a message (ModelvcError) is what hostile bytes should get.
    with contextlib.suppress(ModelvcError):
        planner(path)  # type: ignore[operator]


@FUZZ
@given(data=mutated(SAFETENSORS))
def test_safetensors_planner_refuses_or_plans(tmp_path: Path, data: bytes) -> None:
    _plan(plan_safetensors, tmp_path, data)


@FUZZ
@given(data=mutated(ONNX))
def test_onnx_planner_refuses_or_plans(tmp_path: Path, data: bytes) -> None:
    _plan(plan_onnx, tmp_path, data)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
_ITEM = st.fixed_dictionaries({"name": st.sampled_from(["X", "Y"]) | st.text(max_size=4)},
                              optional={"datatype": st.sampled_from(
                                  ["FP32", "INT64", "BYTES", "BOOL", "FP16", "x"]) | _JSON,
                                  "shape": st.lists(st.integers(-2, 2**40) | st.booleans(),
                                                    max_size=4) | _JSON,
                                  "data": st.lists(st.integers() | st.floats() | st.text(),
                                                   max_size=16) | _JSON,
                                  "parameters": st.fixed_dictionaries(
                                      {"binary_data_size": st.integers(-1, 64) | _JSON})})


@FUZZ
@given(doc=st.fixed_dictionaries({"inputs": st.lists(_ITEM, max_size=3) | _JSON},
                                 optional={"outputs": _JSON, "parameters": _JSON,
                                           "id": _JSON}),
       tail=st.binary(max_size=64), header=st.booleans())
def test_oip_decoder_refuses_or_decodes(doc: dict[str, object], tail: bytes,
                                        header: bool) -> None:
    head = json.dumps(doc).encode()
    with contextlib.suppress(BadRequest):
        parse_infer(head + tail if header else head, str(len(head)) if header else None)


@FUZZ
@given(data=mutated(json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                            "data": [1, 2, 3, 4]}]}).encode()))
def test_oip_decoder_refuses_mutated_bytes(data: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_infer(data, None)
