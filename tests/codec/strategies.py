"""Hypothesis strategies for raw tensor bytes of every safetensors dtype.

Values are bit patterns, not "nice" numbers: arbitrary bytes mixed with the edge
cases each kind has (NaN payloads, -0.0, inf, subnormals, min/max ints).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from modelvc.codec.dtypes import DTYPES

# (exponent bits, mantissa bits) of the sign-magnitude float formats.
FLOAT_FORMATS = {
    "F8_E5M2": (5, 2),
    "F8_E4M3": (4, 3),
    "F16": (5, 10),
    "BF16": (8, 7),
    "F32": (8, 23),
    "F64": (11, 52),
}


def _float_specials(exp_bits: int, man_bits: int) -> list[int]:
    sign = 1 << (exp_bits + man_bits)
    inf = ((1 << exp_bits) - 1) << man_bits
    quiet = 1 << (man_bits - 1)
    magnitudes = [
        0,  # +0 (and -0 below)
        1,  # smallest subnormal
        (1 << man_bits) - 1,  # largest subnormal
        1 << man_bits,  # smallest normal
        inf - 1,  # largest finite
        inf,
        inf | quiet,  # canonical quiet NaN
        inf | 1,  # signalling NaN, smallest payload
        inf | ((1 << man_bits) - 1),  # NaN, all payload bits
    ]
    if man_bits > 2:
        magnitudes.append(inf | quiet | 0b101)  # quiet NaN with a payload
    return magnitudes + [m | sign for m in magnitudes]


def specials(code: str) -> list[bytes]:
    """Edge-case elements of ``code`` as little-endian bytes."""
    info = DTYPES[code]
    size = info.itemsize
    bits = 8 * size
    if code in FLOAT_FORMATS:
        values = _float_specials(*FLOAT_FORMATS[code])
    elif info.kind == "int":
        values = [0, 1, (1 << bits) - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1]
    else:
        values = [0, 1, (1 << bits) - 1, 1 << (bits - 1)]
    return [v.to_bytes(size, "little") for v in values]


def elements(code: str) -> st.SearchStrategy[bytes]:
    size = DTYPES[code].itemsize
    return st.one_of(st.binary(min_size=size, max_size=size), st.sampled_from(specials(code)))


def tensors(code: str, min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[list[bytes]]:
    """A tensor as a list of its elements' bytes (join to get the raw buffer)."""
    return st.lists(elements(code), min_size=min_size, max_size=max_size)


@st.composite
def related(draw: st.DrawFn, code: str, max_size: int = 40) -> tuple[bytes, bytes]:
    """(new, ref) of equal length: ref mostly equal or close to new, sometimes unrelated."""
    new = draw(tensors(code, max_size=max_size))
    ref = []
    for element in new:
        how = draw(st.sampled_from(["same", "same", "near", "other"]))
        if how == "same":
            ref.append(element)
        elif how == "near":
            u = int.from_bytes(element, "little") + draw(st.integers(-3, 3))
            ref.append((u % (1 << (8 * len(element)))).to_bytes(len(element), "little"))
        else:
            ref.append(draw(elements(code)))
    return b"".join(new), b"".join(ref)


def perturbed_f32(n: int, scale: float = 1e-4, seed: int = 0) -> tuple[bytes, bytes]:
    """(new, old) float32 weights: new = old + scale * randn."""
    rng = np.random.default_rng(seed)
    old = rng.standard_normal(n).astype(np.float32)
    new = (old + scale * rng.standard_normal(n)).astype(np.float32)
    return new.tobytes(), old.tobytes()
