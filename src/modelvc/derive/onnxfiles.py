"""ONNX initializers as recipe tensors (onnx is an optional dependency: imported only
when a recipe walks an ONNX file). Only the initializer values change; the graph, its
types and everything else are kept, so a recipe may change values, not dtypes or shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .tensors import Tensor

CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
         np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
         np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def map_onnx(src: Path, dest: Path, prefix: str, fn: Callable[[str, Tensor], Tensor]) -> None:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise UsageError("this recipe needs the onnx package for ONNX files",
                         hint="pip install 'modelvc[demo]' (or onnx)") from exc
    model = onnx.load(str(src), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise UsageError(f"{src.name} keeps its weights in external data files",
                         hint="recipes read ONNX files with inline initializers")
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        code = CODES.get(arr.dtype)
        if code is None:
            continue  # strings, complex...: no recipe touches them
        out = fn(prefix + init.name, Tensor(code, arr))
        if out.code != code or out.array.shape != arr.shape:
            raise UsageError(f"{src.name}: {init.name} would change dtype or shape, which an "
                             "ONNX graph's declared types do not allow",
                             hint="this recipe works on safetensors models")
        if out.array is not arr:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(out.array), init.name))
    dest.write_bytes(model.SerializeToString())
