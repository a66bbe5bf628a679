"""Non-tensor bytes (config.json, tokenizer files, opaque chunks) as zstd blobs.

b"MVB1" + one zstd frame     when zstd shrinks the data
b"MVB0" + the raw bytes      otherwise (already-compressed chunks cost a memcpy)
"""

from __future__ import annotations

from modelvc.codec.dtypes import Buffer
from modelvc.codec.zstd_ctx import compressor, decompress_frame
from modelvc.errors import CorruptObject

ZSTD_MAGIC = b"MVB1"
RAW_MAGIC = b"MVB0"

# A blob decodes to at most this many bytes: bounds the allocation a garbled
# frame header could ask for (blobs are chunked far below this).
MAX_BLOB = 1 << 34


def encode_blob(data: Buffer, level: int = 3) -> bytes:
    """Compress ``data`` with zstd, or keep it raw when zstd does not make it smaller."""
    packed = compressor(level).compress(data)
    if len(packed) < memoryview(data).nbytes:
        return ZSTD_MAGIC + packed
    return RAW_MAGIC + bytes(data)


def decode_blob(obj: Buffer) -> bytes:
    """Inverse of encode_blob; CorruptObject on a bad magic or undecodable data."""
    view = memoryview(obj).cast("B")
    magic = bytes(view[:4])
    if magic == RAW_MAGIC:
        return bytes(view[4:])
    if magic != ZSTD_MAGIC:
        raise CorruptObject(f"not a blob object (magic {magic!r})")
    return decompress_frame(view[4:], "blob", MAX_BLOB)
