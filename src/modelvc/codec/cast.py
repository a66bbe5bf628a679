"""Cast prediction: what a narrower-dtype export of a reference tensor would hold.

When a model is exported from F32 to BF16/F16 (or F64 to F32), the new tensor is
almost exactly the reference rounded to nearest-even. Predicting that rounding and
storing only the difference makes such an export nearly free.

The prediction must be bit-identical on every machine that ever decodes the
object, so it is computed on integer bit patterns here rather than by hardware
conversions (which honour per-process flush-to-zero modes and treat NaN payloads
differently across instruction sets). The prediction need not be invertible: the
delta against it is. NaN inputs predict a NaN; its payload is arbitrary but fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelvc.codec.dtypes import Buffer, dtype_info
from modelvc.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Format:
    exp_bits: int
    man_bits: int

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def inf(self) -> int:
        return ((1 << self.exp_bits) - 1) << self.man_bits


_FORMATS = {
    "F64": _Format(11, 52),
    "F32": _Format(8, 23),
    "F16": _Format(5, 10),
    "BF16": _Format(8, 7),
}

# (reference dtype, new dtype) pairs that cast prediction covers: narrowing exports.
CAST_PAIRS = frozenset(
    {("F32", "BF16"), ("F32", "F16"), ("F64", "F32"), ("F64", "BF16"), ("F64", "F16")}
)


def can_cast_predict(ref_code: str, code: str) -> bool:
    """True when a ``code`` tensor can be predicted from a ``ref_code`` reference."""
    return (ref_code, code) in CAST_PAIRS


def _rne_shift(x: I64, shift: int | I64) -> I64:
    """``x >> shift`` rounded to nearest, ties to even (shift >= 1, x >= 0)."""
    import numpy as np

    odd = (x >> shift) & 1
    rounded: I64 = (x + ((np.int64(1) << (shift - 1)) - 1) + odd) >> shift
    return rounded


def _f32_to_bf16(u: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint16]:
    """Same exponent range: rounding the low 16 bits away is the whole cast."""
    import numpy as np

    odd = (u >> np.uint32(16)) & np.uint32(1)
    rounded = (u + np.uint32(0x7FFF) + odd) >> np.uint32(16)  # finite values never wrap
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = (u >> np.uint32(16)) | np.uint32(0x0040)  # keep the top payload bits, quieted
    return np.where(nan, quiet, rounded).astype(np.uint16)


def _narrow(u: I64, src: _Format, dst: _Format) -> I64:
    """Round IEEE-style ``src`` bits (in int64) to ``dst`` bits, ties to even.

    Handles overflow to infinity, results that become subnormal or zero, and
    subnormal inputs; NaN becomes dst's canonical quiet NaN with the input's sign.
    """
    import numpy as np

    sign = (u >> (src.bits - 1)) & 1
    mag = u & ((1 << (src.bits - 1)) - 1)  # Python int: 2**63 - 1 still fits
    exp = mag >> src.man_bits
    man = mag & ((1 << src.man_bits) - 1)
    drop = src.man_bits - dst.man_bits
    # Biased dst exponent; a subnormal src has effective exponent field 1.
    e = np.maximum(exp, 1) - (src.bias - dst.bias)

    # Normal dst result: rebias then round the dropped mantissa bits (a carry
    # rolls into the exponent, as it should).
    normal = _rne_shift(mag - ((src.bias - dst.bias) << src.man_bits), drop)
    normal = np.minimum(normal, dst.inf)  # overflow (and inf) -> inf

    # Subnormal (or zero) dst result: shift the full significand further right.
    full = man | ((exp != 0).astype(np.int64) << src.man_bits)
    extra = np.clip(drop + 1 - e, 1, 62)
    tiny = _rne_shift(full, extra)

    out = np.where(e >= 1, normal, tiny)
    out = np.where(mag > src.inf, dst.inf | (1 << (dst.man_bits - 1)), out)
    out |= sign << (dst.bits - 1)
    return out


def cast_predict(ref: Buffer, ref_code: str, code: str) -> bytes | memoryview:
    """The reference's raw bytes cast to ``code``, rounding to nearest-even."""
    if not can_cast_predict(ref_code, code):
        raise UsageError(f"no cast prediction from {ref_code} to {code}")
    src_size = dtype_info(ref_code).itemsize
    if memoryview(ref).nbytes % src_size:
        raise UsageError(f"cast_predict: reference is not a whole number of {ref_code} elements")
    if (ref_code, code) == ("F32", "BF16"):  # the C kernel where built: no numpy
        from modelvc.codec import kernels

        pred = kernels.empty(memoryview(ref).nbytes // 2)
        kernels.cast_bf16(pred, ref)
        return memoryview(pred).toreadonly()
    import numpy as np

    from modelvc.codec.npdtypes import UINT_BY_SIZE

    u = np.frombuffer(ref, dtype=UINT_BY_SIZE[src_size])
    bits = u.view(np.int64) if src_size == 8 else u.astype(np.int64)
    out = _narrow(bits, _FORMATS[ref_code], _FORMATS[code])
    return out.astype(UINT_BY_SIZE[dtype_info(code).itemsize]).tobytes()
