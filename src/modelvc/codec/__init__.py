"""Tensor and blob codecs: byte planes + zstd, integer deltas, dtype-cast prediction.

Pure functions over bytes; no I/O besides the BinaryIO a TensorObjectWriter is given.
With the C kernels built, decoding and a first version's encoding import no numpy:
the numpy delta codec (codec.delta) is loaded when first asked for.
"""

from typing import Any

from modelvc.codec.blob import decode_blob, encode_blob
from modelvc.codec.block import decode_chain, decode_delta_run
from modelvc.codec.cast import can_cast_predict, cast_predict
from modelvc.codec.dtypes import DTYPES, DTypeInfo, dtype_info, numpy_dtype
from modelvc.codec.planes import compress_planes, decompress_planes
from modelvc.codec.tensor import (
    BLOCK_ELEMENTS,
    BlockInfo,
    TensorHeader,
    TensorObjectWriter,
    block_spans,
    decode_block,
    decode_tensor,
    encode_block,
    encode_tensor,
    read_header,
    read_header_bytes,
)

__all__ = [
    "BLOCK_ELEMENTS",
    "DTYPES",
    "BlockInfo",
    "DTypeInfo",
    "TensorHeader",
    "TensorObjectWriter",
    "block_spans",
    "can_cast_predict",
    "cast_predict",
    "compress_planes",
    "decode_blob",
    "decode_block",
    "decode_chain",
    "decode_delta_run",
    "decode_tensor",
    "decompress_planes",
    "delta_decode",
    "delta_encode",
    "dtype_info",
    "encode_blob",
    "encode_block",
    "encode_tensor",
    "numpy_dtype",
    "read_header",
    "read_header_bytes",
]


def __getattr__(name: str) -> Any:
    if name in ("delta_decode", "delta_encode"):
        from modelvc.codec import delta

        return getattr(delta, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
