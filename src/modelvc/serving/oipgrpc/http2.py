"""HTTP/2's wire format as a gRPC server needs it (RFC 9113): frame headers, the frames it
sends, and HPACK header blocks written as literals that never touch the dynamic table
(RFC 7541 6.2.2), so an answer's headers are the same bytes on every connection and cost
no encoder state. Requests' header blocks are decoded by the `hpack` package."""

from __future__ import annotations

import struct
from collections.abc import Iterator

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
# flags
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
# settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384  # the largest frame a peer takes until it says otherwise
MAX_WINDOW = 2**31 - 1

HEAD = struct.Struct(">BHBBI")  # length (24 bits as 8 + 16), type, flags, stream id
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")


def head(length: int, kind: int, flags: int, sid: int) -> bytes:
    return HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, sid)


def parse_head(buf: bytes | bytearray | memoryview, at: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at AT."""
    hi, lo, kind, flags, sid = HEAD.unpack_from(buf, at)
    return (hi << 16) | lo, kind, flags, sid & 0x7FFFFFFF


class FrameTooLarge(ValueError):
    """A frame longer than the reader takes (its MAX_FRAME_SIZE)."""


def whole_frames(buf: bytes | bytearray, at: int = 0, limit: int = 2**24 - 1
                 ) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, stream id, payload start, payload end) of each whole frame in BUF
    from AT on; a frame not all there yet ends it (the reader keeps BUF from there)."""
    while len(buf) - at >= 9:
        length, kind, flags, sid = parse_head(buf, at)
        if length > limit:
            raise FrameTooLarge(f"a frame of {length} bytes")
        if len(buf) - at - 9 < length:
            return
        yield kind, flags, sid, at + 9, at + 9 + length
        at += 9 + length


def settings(values: dict[int, int]) -> bytes:
    body = b"".join(_SETTING.pack(k, v) for k, v in values.items())
    return head(len(body), SETTINGS, 0, 0) + body


def parse_settings(payload: bytes | memoryview) -> list[tuple[int, int]]:
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload) - 5, 6)]


SETTINGS_ACK = head(0, SETTINGS, ACK, 0)


def window_update(sid: int, increment: int) -> bytes:
    return head(4, WINDOW_UPDATE, 0, sid) + _U32.pack(increment)


def rst_stream(sid: int, code: int) -> bytes:
    return head(4, RST_STREAM, 0, sid) + _U32.pack(code)


def goaway(last_sid: int, code: int, debug: bytes = b"") -> bytes:
    return head(8 + len(debug), GOAWAY, 0, 0) + _U32.pack(last_sid) + _U32.pack(code) + debug


def u32(payload: bytes | memoryview, at: int = 0) -> int:
    return int(_U32.unpack_from(payload, at)[0])


def headers(sid: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """A header block as HEADERS (+ CONTINUATION frames when it is over MAX_FRAME)."""
    first, rest = block[:max_frame], block[max_frame:]
    flags = (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS)
    out = [head(len(first), HEADERS, flags, sid), first]
    while rest:
        part, rest = rest[:max_frame], rest[max_frame:]
        out += [head(len(part), CONTINUATION, 0 if rest else END_HEADERS, sid), part]
    return b"".join(out)


def hpack_int(value: int, bits: int, flags: int = 0) -> bytes:
    """An HPACK integer with a BITS-bit prefix (RFC 7541 5.1)."""
    top = (1 << bits) - 1
    if value < top:
        return bytes((flags | value,))
    out = bytearray((flags | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field without indexing, its name a literal (no Huffman coding)."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def literal_indexed_name(index: int, value: bytes) -> bytes:
    """A header field without indexing, its name the static table's INDEX."""
    return hpack_int(index, 4) + hpack_int(len(value), 7) + value


STATUS_200 = b"\x88"  # ":status: 200" is the static table's entry 8
STATUS, CONTENT_TYPE = 8, 31  # the static table's :status and content-type names


class HpackError(Exception):
    """A header block that does not decode: the connection ends (COMPRESSION_ERROR)."""


class HeaderDecoder:
    """HPACK decoding (RFC 7541) for one connection's requests, with the static table and
    Huffman code of the `hpack` package. It exists because hpack's own decoder cost ~75
    us of a gRPC call (cProfile, session 16): a call's ~10 fields are a few byte reads
    here, and the Huffman-coded strings a client sends again and again are decoded once.
    """

    def __init__(self, max_table: int = 4096, max_list: int = 64 * 2**10) -> None:
        from hpack.table import HeaderTable

        self.static: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
        self.dynamic: list[tuple[bytes, bytes]] = []  # newest first
        self.size, self.cap, self.max_table = 0, max_table, max_table
        self.max_list = max_list
        self.strings: dict[bytes, bytes] = {}  # Huffman-coded -> decoded

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        at, end, total = 0, len(block), 0
        try:
            while at < end:
                b = block[at]
                if b & 0x80:  # indexed field
                    index, at = self._int(block, at, 7)
                    field = self._entry(index)
                elif b & 0x40:  # literal, added to the table
                    name, value, at = self._literal(block, at, 6)
                    field = (name, value)
                    self._add(name, value)
                elif b & 0x20:  # table size update
                    size, at = self._int(block, at, 5)
                    if size > self.max_table:
                        raise HpackError(f"table size {size} over {self.max_table}")
                    self.cap = size
                    self._evict()
                    continue
                else:  # literal, not added (never indexed or without indexing)
                    name, value, at = self._literal(block, at, 4)
                    field = (name, value)
                out.append(field)
                total += len(field[0]) + len(field[1]) + 32
                if total > self.max_list:
                    raise HpackError("the header list is over its limit")
        except IndexError as exc:
            raise HpackError("the header block is cut short") from exc
        return out

    def _int(self, block: bytes, at: int, bits: int) -> tuple[int, int]:
        top = (1 << bits) - 1
        value = block[at] & top
        at += 1
        if value < top:
            return value, at
        shift = 0
        while True:
            b = block[at]
            at += 1
            value += (b & 127) << shift
            if not b & 128:
                return value, at
            shift += 7
            if shift > 28:
                raise HpackError("an integer over 2^28")

    def _string(self, block: bytes, at: int) -> tuple[bytes, int]:
        huffman = block[at] & 0x80
        length, at = self._int(block, at, 7)
        raw = block[at:at + length]
        if len(raw) != length:
            raise HpackError("a string runs past the block")
        if not huffman:
            return raw, at + length
        text = self.strings.get(raw)
        if text is None:
            from hpack.exceptions import HPACKDecodingError
            from hpack.huffman_table import decode_huffman

            try:
                text = decode_huffman(raw)
            except HPACKDecodingError as exc:
                raise HpackError(f"bad Huffman code: {exc}") from exc
            if len(self.strings) >= 4096:
                self.strings.clear()
            self.strings[raw] = text
        return text, at + length

    def _literal(self, block: bytes, at: int, bits: int) -> tuple[bytes, bytes, int]:
        index, at = self._int(block, at, bits)
        if index:
            name = self._entry(index)[0]
        else:
            name, at = self._string(block, at)
        value, at = self._string(block, at)
        return name, value, at

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= 61:
            return self.static[index - 1]
        if 61 < index <= 61 + len(self.dynamic):
            return self.dynamic[index - 62]
        raise HpackError(f"no table entry {index}")

    def _add(self, name: bytes, value: bytes) -> None:
        self.dynamic.insert(0, (name, value))
        self.size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self.size > self.cap and self.dynamic:
            name, value = self.dynamic.pop()
            self.size -= len(name) + len(value) + 32
