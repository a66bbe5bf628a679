"""zstd frames decoded into callers' buffers; the frame checksum skipped on request."""

from __future__ import annotations

import pytest

from modelvc.codec.zstd_ctx import compressor, decompress_into
from modelvc.errors import CorruptObject

DATA = bytes(range(256)) * 512


def _frame() -> bytearray:
    frame = bytearray(compressor(1).compress(DATA))
    assert frame[4] & 0x04, "frames are written with a checksum"
    return frame


def test_into_a_buffer_checks_the_frame_checksum() -> None:
    out = bytearray(len(DATA))
    frame = _frame()
    decompress_into(memoryview(frame), memoryview(out), "x")
    assert out == DATA
    frame[-1] ^= 0xFF  # the checksum alone is wrong
    with pytest.raises(CorruptObject, match="x: undecodable"):
        decompress_into(memoryview(frame), memoryview(out), "x")


def test_checksum_false_skips_only_the_checksum_and_restores_the_frame() -> None:
    """For a caller that hashes what it decodes (checkout): the right bytes decode past
    a wrong checksum; the frame's flag is put back; a read-only frame keeps the check."""
    frame = _frame()
    frame[-1] ^= 0xFF
    before = bytes(frame)
    out = bytearray(len(DATA))
    decompress_into(memoryview(frame), memoryview(out), "x", checksum=False)
    assert out == DATA
    assert frame == before
    with pytest.raises(CorruptObject):
        decompress_into(before, memoryview(out), "x", checksum=False)


def test_checksum_false_still_refuses_garbled_data_or_a_wrong_size() -> None:
    frame = _frame()
    out = bytearray(len(DATA) - 1)
    with pytest.raises(CorruptObject, match="holds"):
        decompress_into(memoryview(frame), memoryview(out), "x", checksum=False)
    frame[len(frame) // 2] ^= 0xFF
    out = bytearray(len(DATA))
    try:
        decompress_into(memoryview(frame), memoryview(out), "x", checksum=False)
    except CorruptObject:
        return
    assert out != DATA  # decoded, to other bytes: the caller's hash catches them
