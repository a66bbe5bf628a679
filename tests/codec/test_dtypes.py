from __future__ import annotations

import numpy as np
import pytest

from modelvc.codec.dtypes import DTYPES, dtype_info, numpy_dtype
from modelvc.errors import UsageError

ALL_CODES = [
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16",
    "I32", "U32", "F32", "F64", "I64", "U64", "C64",
]  # fmt: skip


def test_every_safetensors_dtype_is_known() -> None:
    assert sorted(DTYPES) == sorted(ALL_CODES)
    for code, info in DTYPES.items():
        assert info.code == code
        assert info.itemsize in (1, 2, 4, 8)


def test_kinds() -> None:
    assert {c for c, i in DTYPES.items() if i.kind == "float"} == {
        "F8_E5M2", "F8_E4M3", "F16", "BF16", "F32", "F64",
    }  # fmt: skip
    assert dtype_info("F8_E8M0").kind == "uint"
    assert dtype_info("C64") == DTYPES["C64"]
    assert (dtype_info("C64").itemsize, dtype_info("C64").kind) == (8, "uint")
    assert dtype_info("BOOL").kind == "bool"
    assert dtype_info("I32").kind == "int"


def test_unknown_code_names_the_code() -> None:
    with pytest.raises(UsageError, match="F12"):
        dtype_info("F12")
    with pytest.raises(UsageError):
        numpy_dtype("f32")


@pytest.mark.parametrize("code", ALL_CODES)
def test_numpy_dtype_matches_width(code: str) -> None:
    dt = numpy_dtype(code)
    if code == "BF16" or code.startswith("F8_"):
        assert dt is None
        return
    assert dt is not None
    assert dt.itemsize == dtype_info(code).itemsize
    assert dt.byteorder in ("<", "|", "=") and dt.str[0] in "<|"


def test_numpy_dtypes_are_the_expected_ones() -> None:
    assert numpy_dtype("F32") == np.dtype("<f4")
    assert numpy_dtype("BOOL") == np.dtype(bool)
    assert numpy_dtype("I64") == np.dtype("<i8")
