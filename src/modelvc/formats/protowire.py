"""Minimal protobuf wire-format reader: enough to walk ONNX files without the onnx package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True)
class Field:
    number: int
    wire: int
    value: int  # the varint / fixed value, or for LEN the payload's absolute offset
    length: int = 0  # LEN payload length


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"varint runs past the end at byte {pos}")
        if shift >= 70:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos


def as_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def iter_fields(buf: memoryview, start: int, end: int) -> Iterator[Field]:
    """The fields of the message occupying buf[start:end]; raises WireError if malformed."""
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            raise WireError(f"invalid field number {number} at byte {pos}")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield Field(number, wire, value)
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise WireError(f"fixed-width field runs past the end at byte {pos}")
            yield Field(number, wire, int.from_bytes(buf[pos : pos + width], "little"))
            pos += width
        elif wire == LEN:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {number} of {length} bytes runs past the end at {pos}")
            yield Field(number, wire, pos, length)
            pos += length
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise WireError(f"unsupported wire type {wire} at byte {pos}")


def packed_varints(buf: memoryview, start: int, length: int) -> list[int]:
    out: list[int] = []
    pos, end = start, start + length
    while pos < end:
        v, pos = read_varint(buf, pos, end)
        out.append(v)
    return out
