"""The safetensors element types and what the codecs need to know about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelvc.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["float", "int", "uint", "bool"]

# Raw bytes as the codecs accept them (anything exposing a flat byte buffer).
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class DTypeInfo:
    """One safetensors dtype: its code, element width in bytes and arithmetic kind.

    ``kind`` picks the delta mapping: "float" is sign-magnitude (mapped to an
    order-preserving integer before subtracting); the others subtract directly.
    """

    code: str
    itemsize: int
    kind: Kind


def _info(code: str, itemsize: int, kind: Kind) -> tuple[str, DTypeInfo]:
    return code, DTypeInfo(code, itemsize, kind)


DTYPES: dict[str, DTypeInfo] = dict(
    [
        _info("BOOL", 1, "bool"),
        _info("U8", 1, "uint"),
        _info("I8", 1, "int"),
        _info("F8_E5M2", 1, "float"),
        _info("F8_E4M3", 1, "float"),
        # E8M0 is an unsigned exponent-only scale format: no sign bit to map.
        _info("F8_E8M0", 1, "uint"),
        _info("I16", 2, "int"),
        _info("U16", 2, "uint"),
        _info("F16", 2, "float"),
        _info("BF16", 2, "float"),
        _info("I32", 4, "int"),
        _info("U32", 4, "uint"),
        _info("F32", 4, "float"),
        _info("F64", 8, "float"),
        _info("I64", 8, "int"),
        _info("U64", 8, "uint"),
        # A complex64 is two float32s; treating it as raw 8-byte bits keeps deltas
        # bijective without a two-lane mapping.
        _info("C64", 8, "uint"),
    ]
)

# Explicitly little-endian: safetensors stores raw bytes LE whatever the host.
_NUMPY: dict[str, str] = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "F64": "<f8",
    "I64": "<i8",
    "U64": "<u8",
    "C64": "<c8",
}

def dtype_info(code: str) -> DTypeInfo:
    """Look up a safetensors dtype code such as "F32" or "BF16"."""
    try:
        return DTYPES[code]
    except KeyError:
        known = ", ".join(DTYPES)
        raise UsageError(f"unknown tensor dtype {code!r} (known: {known})") from None


def numpy_dtype(code: str) -> np.dtype[np.generic] | None:
    """The little-endian numpy dtype for a code, or None where numpy has none (BF16, F8)."""
    import numpy as np  # here: the codec itself runs without numpy (codec.kernels)

    dtype_info(code)
    name = _NUMPY.get(code)
    return None if name is None else np.dtype(name)
