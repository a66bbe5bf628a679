"""The codec's element-wise hot loops: the C extension when built, numpy otherwise.

Seven jobs, each over whole blocks and the same in both implementations (bit for bit;
step_ratio as numpy.median computes it):

    merge(out, planes)                  interleave byte planes into elements
    split(out, src, itemsize)           elements -> byte planes (plane b at out[b*n:])
    residual(out, new, ref, ref2, k, itemsize, is_float)
                                        planes of zigzag(new - ref - k*(ref - ref2)),
                                        floats in the order-preserving domain
    run(out, base, links, itemsize, is_float, cast, shift)
                                        base + each link's unzigzagged planes (+ k times
                                        the previous link's step); links oldest first as
                                        (k, planes) or (k, planes, starts), planes None
                                        for an unchanged link; with starts (256 uint32,
                                        each group's first position) the link's elements
                                        are stored grouped (see group)
    group(out, src, ref, itemsize, shift, counts)
                                        src's byte planes reordered stably by the group
                                        of ref's elements: the float exponent field,
                                        (|bits| >> shift) & 0xFF; counts gets group sizes
    cast_bf16(out, src)                 F32 -> BF16 prediction (codec.cast)
    step_ratio(new, ref, ref2, itemsize, is_float)
                                        the median step multiple of the elements
                                        that moved (an encoder's sample), or None

The C versions (codec/_kernels.c) do each in one pass over cache-sized chunks without
the GIL; numpy needs a dozen passes. `pip install` builds the extension where a C
compiler is present; MODELVC_PURE_CODEC=1 forces the numpy versions (codec.numpy_kernels).
The extension also hands out the codec's buffers (`empty`, uninitialised memoryviews)
and compares blocks (`equal`), so that with it built a checkout or a commit of files
never imports numpy (~120-135 M instructions, ~25-30 ms of a one-shot command, as
measured in docs/benchmarks.md, session 15; issue 13).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# Anything exporting a contiguous byte buffer (bytes, memoryview, numpy arrays).
Buf = Any
# (k, planes) or (k, planes, group starts): see run.
Link = tuple[int, Sequence[Buf] | None] | tuple[int, Sequence[Buf] | None, Buf | None]
# What the extension's VERSION must be for this module to call it (codec/_kernels.c).
KERNELS_VERSION = 4
# Builds of these versions take the same arguments (version 4 un-groups faster); a build
# of version 3 took a grouped link's elements merged and is not called.
_SAME_CALLS = (2, KERNELS_VERSION)


def _load_native() -> ModuleType | None:
    if os.environ.get("MODELVC_PURE_CODEC"):
        return None
    try:
        from modelvc.codec import _kernels  # type: ignore[attr-defined]
    except ImportError:
        return None
    if getattr(_kernels, "VERSION", 1) not in _SAME_CALLS:  # a stale build: not called
        return None
    return _kernels  # type: ignore[no-any-return]


native = _load_native()
NATIVE = native is not None
if native is not None:
    impl: Any = native
else:
    from modelvc.codec.numpy_kernels import NumpyKernels as impl


def __getattr__(name: str) -> Any:
    # The numpy reference implementation, loaded when first asked for (tests; groups'
    # numpy decode path): with the C kernels a command never imports numpy for it.
    if name in ("NumpyKernels", "group_keys"):
        from modelvc.codec import numpy_kernels

        return getattr(numpy_kernels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if native is not None and hasattr(native, "empty"):
    empty = native.empty
else:
    def empty(nbytes: int) -> Any:
        """An uninitialised output buffer (no zero-fill pass): a writable byte
        memoryview (the C kernels' empty), or a numpy byte array without them."""
        from modelvc.codec import numpy_kernels

        return numpy_kernels.empty(nbytes)


if native is not None and hasattr(native, "equal"):
    equal = native.equal
else:
    def equal(a: Buf, b: Buf) -> bool:
        """Whether two byte buffers hold the same bytes."""
        import numpy as np

        return bool(np.array_equal(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)))


def merge(out: Buf, planes: Sequence[Buf]) -> None:
    impl.merge(out, planes)


def split(out: Buf, src: Buf, itemsize: int) -> None:
    impl.split(out, src, itemsize)


def residual(out: Buf, new: Buf, ref: Buf, ref2: Buf | None, k: int,
             itemsize: int, is_float: bool) -> None:
    impl.residual(out, new, ref, ref2, k, itemsize, is_float)


def run(out: Buf, base: Buf, links: Sequence[Link], itemsize: int, is_float: bool,
        cast: Sequence[Buf] | None = None, shift: int = 0) -> None:
    """base: a buffer or a list of byte planes; cast: an F32 -> BF16 link's planes;
    shift: the exponent field's position, for grouped links."""
    impl.run(out, base, links, itemsize, is_float, cast, shift)


def group(out: Buf, src: Buf, ref: Buf, itemsize: int, shift: int, counts: Buf) -> None:
    impl.group(out, src, ref, itemsize, shift, counts)


def cast_bf16(out: Buf, src: Buf) -> None:
    impl.cast_bf16(out, src)


if native is not None and hasattr(native, "step_ratio"):
    _step_ratio: Any = native.step_ratio
else:
    def _step_ratio(*args: Any) -> float | None:
        from modelvc.codec.numpy_kernels import NumpyKernels

        return NumpyKernels.step_ratio(*args)  # type: ignore[no-any-return]


def step_ratio(new: Buf, ref: Buf, ref2: Buf, itemsize: int, is_float: bool) -> float | None:
    """The median over the elements that moved (ref != ref2) of (new - ref) / (ref -
    ref2) in the integer (for floats order-preserving) domain; None if none moved."""
    return _step_ratio(new, ref, ref2, itemsize, is_float)  # type: ignore[no-any-return]
