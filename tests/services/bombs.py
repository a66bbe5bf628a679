"""Decompression bombs built, not compressed. A deflate stream of N zeros is a literal 0
and then matches (length 258, distance 1) to the end; in a Huffman code where the
length-258 symbol and the one distance symbol are one bit each ("0"), every match is two
zero bits, so the stream is a small header, zero bytes, and the end-of-block code: ~1030x
smaller than what it inflates to, as zlib makes it, without zlib's ~2.7 s of CPU per GiB
at level 9 to find those matches."""

from __future__ import annotations

import struct
import zlib

_MATCH = 258  # the longest match deflate has
# The code-length code's order in a dynamic block header (RFC 1951, 3.2.7).
_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)


class _Bits:
    """Bits packed LSB first, as deflate packs them (Huffman codes most significant bit
    first within that)."""

    def __init__(self) -> None:
        self.value = 0
        self.n = 0

    def put(self, value: int, n: int) -> None:
        self.value |= value << self.n
        self.n += n

    def code(self, code: int, n: int) -> None:
        self.put(int(f"{code:0{n}b}"[::-1], 2), n)

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.n + 7) // 8, "little")


def deflate_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of at least SIZE zeros and how many zeros it holds."""
    matches = max(0, -(-(size - 1) // _MATCH))
    bits = _Bits()
    bits.put(1, 1)  # BFINAL
    bits.put(2, 2)  # BTYPE 10: dynamic Huffman codes
    bits.put(286 - 257, 5)  # HLIT: literal/length code lengths 0..285
    bits.put(1 - 1, 5)  # HDIST: one distance code
    bits.put(18 - 4, 4)  # HCLEN: code-length code lengths given, in _ORDER
    # The code-length code: 18 (a run of zeros) one bit "0", 1 -> "10", 2 -> "11".
    lengths = {18: 1, 1: 2, 2: 2}
    for symbol in _ORDER[:18]:
        bits.put(lengths.get(symbol, 0), 3)
    # Literal/length lengths: 0 -> 2, 256 (end of block) -> 2, 285 (258) -> 1; the
    # one distance code -> 1. Canonical codes: 285 "0", 0 "10", 256 "11"; distance "0".
    cl = {18: (0, 1), 1: (0b10, 2), 2: (0b11, 2)}

    def zeros(n: int) -> None:  # n in 11..138: symbol 18, 7 extra bits
        bits.code(*cl[18])
        bits.put(n - 11, 7)

    bits.code(*cl[2])  # literal 0
    zeros(138)
    zeros(255 - 138)  # literals 1..255
    bits.code(*cl[2])  # 256
    zeros(284 - 256)  # 257..284
    bits.code(*cl[1])  # 285
    bits.code(*cl[1])  # distance 0
    bits.code(0b10, 2)  # the data: literal 0, ...
    bits.n += 2 * matches  # ... then each match "0" + distance "0"
    bits.code(0b11, 2)  # end of block
    return bits.bytes(), 1 + matches * _MATCH


def bomb(encoding: str, mib: int) -> bytes:
    """MIB MiB of zeros (a few bytes more) as an HTTP body of Content-Encoding ENCODING
    (gzip, or deflate: the zlib format), about a thousandth the size."""
    raw, n = deflate_zeros(mib << 20)
    if encoding == "deflate":
        return b"\x78\x01" + raw + struct.pack(">I", (n % 65521) << 16 | 1)  # adler32
    crc, zeros = 0, memoryview(bytes(1 << 20))
    for at in range(0, n, len(zeros)):
        crc = zlib.crc32(zeros[:n - at], crc)  # a view: no copy per MiB
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + raw + struct.pack("<II", crc, n)
