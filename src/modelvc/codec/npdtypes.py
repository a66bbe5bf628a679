"""numpy dtypes of each element width, for the codec's numpy code paths (the reference
kernels, encode-side sampling, the numpy delta codec). Kept apart from codec.dtypes so
that decoding with the C kernels never imports numpy."""

from __future__ import annotations

import numpy as np

# Same-width unsigned integer views: all delta arithmetic happens on these.
UINT_BY_SIZE: dict[int, np.dtype[np.unsignedinteger]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}
INT_BY_SIZE: dict[int, np.dtype[np.signedinteger]] = {
    1: np.dtype("<i1"),
    2: np.dtype("<i2"),
    4: np.dtype("<i4"),
    8: np.dtype("<i8"),
}
