"""Per-thread zstd contexts.

Creating a ZstdCompressor allocates its working memory (megabytes at higher
levels), so doing it per block costs more than compressing a small block. The
contexts are not thread-safe, hence one set per thread; zstandard releases the
GIL, so blocks encoded on a thread pool really run in parallel.
"""

from __future__ import annotations

import threading

import zstandard

from modelvc.errors import CorruptObject

ZstdError = zstandard.ZstdError


class _Contexts(threading.local):
    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()


_local = _Contexts()


def compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor for ``level`` (frames carry content size and checksum)."""
    ctx = _local.compressors.get(level)
    if ctx is None:
        # The checksum (XXH64, far faster than zstd itself) catches garbled frames.
        ctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        _local.compressors[level] = ctx
    return ctx


def _check_size(frame: bytes | memoryview, size: int, what: str) -> None:
    """The frame must declare exactly `size` bytes, checked before decoding so a garbled
    header cannot make us allocate or write an arbitrary amount."""
    try:
        declared = zstandard.frame_content_size(frame)
    except ZstdError as exc:
        raise CorruptObject(f"{what}: bad zstd frame header ({exc})") from exc
    if declared != size:
        raise CorruptObject(f"{what}: zstd frame holds {declared} bytes, expected {size}")


def decompress_exact(frame: bytes | memoryview, size: int, what: str) -> bytes:
    """Decompress one frame that must hold exactly ``size`` bytes.

    The declared content size is checked before decompressing so a garbled header
    cannot make us allocate an arbitrary amount of memory.
    """
    _check_size(frame, size, what)
    try:
        out: bytes = _local.decompressor.decompress(frame)
    except ZstdError as exc:
        raise CorruptObject(f"{what}: undecodable zstd data ({exc})") from exc
    if len(out) != size:
        raise CorruptObject(f"{what}: zstd frame decoded to {len(out)} bytes, expected {size}")
    return out


def decompress_into(frame: bytes | memoryview, out: memoryview, what: str, *,
                    checksum: bool = True) -> None:
    """decompress_exact into a caller's buffer of exactly the frame's size: reused
    buffers spare the page faults of fresh memory, which cost more than the decoding.

    checksum=False: the caller checks what it decodes against its object id (BLAKE3,
    checkout), so the frame's own checksum (XXH64, ~14 % of the decode) is not checked
    when the frame is writable memory (its flag cleared for the call, then restored)."""
    size = len(out)
    _check_size(frame, size, what)
    flagged = (not checksum and isinstance(frame, memoryview) and not frame.readonly
               and len(frame) > 9 and frame[4] & _CHECKSUM_FLAG)
    if flagged:
        assert isinstance(frame, memoryview)
        whole, frame = frame, frame[:-4]  # the 4 checksum bytes at the end
        whole[4] &= ~_CHECKSUM_FLAG & 0xFF
    try:
        _decompress_into(frame, out, size, what)
    finally:
        if flagged:
            whole[4] |= _CHECKSUM_FLAG


# Frame_Header_Descriptor (the byte after the magic): Content_Checksum_flag.
_CHECKSUM_FLAG = 0x04


def _decompress_into(frame: bytes | memoryview, out: memoryview, size: int,
                     what: str) -> None:
    got = 0
    try:
        reader = _local.decompressor.stream_reader(frame, read_size=1 << 20)
        while got < size:
            k = reader.readinto(out[got:])
            if not k:
                break
            got += k
        # Reading on past a full buffer makes the decoder finish the frame: its
        # checksum is only checked there.
        if got == size and reader.read(1):
            raise CorruptObject(f"{what}: zstd frame holds more than {size} bytes")
    except ZstdError as exc:
        raise CorruptObject(f"{what}: undecodable zstd data ({exc})") from exc
    if got != size:
        raise CorruptObject(f"{what}: zstd frame decoded to {got} bytes, expected {size}")


def decompress_frame(frame: bytes | memoryview, what: str, max_size: int) -> bytes:
    """Decompress one whole frame of unknown size (at most ``max_size``); no trailing data."""
    try:
        declared = zstandard.frame_content_size(frame)
        if declared < 0:
            raise CorruptObject(f"{what}: zstd frame does not record its size")
        if declared > max_size:
            raise CorruptObject(f"{what}: zstd frame claims {declared} bytes (> {max_size})")
        dobj = _local.decompressor.decompressobj()
        out: bytes = dobj.decompress(frame)
        if not dobj.eof or dobj.unused_data:
            raise CorruptObject(f"{what}: truncated zstd frame or trailing data")
    except ZstdError as exc:
        raise CorruptObject(f"{what}: undecodable zstd data ({exc})") from exc
    if len(out) != declared:
        raise CorruptObject(f"{what}: zstd frame decoded to {len(out)} bytes, expected {declared}")
    return out
