"""The body of an upload request: a batch of chunks, each framed with its digest,

    repeated: u32 payload length | 32-byte BLAKE3 of the payload | payload

so a batch streams without a round trip per chunk, and a request cut off keeps every
complete frame. A sender puts up to BATCH_BYTES in one request, in frames of
CHUNK_BYTES (Content-Type FRAMES_TYPE); a receiver refuses frames above MAX_CHUNK and
requests above MAX_REQUEST.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import blake3

from ..errors import StorageError, UsageError

CHUNK_BYTES = 8 << 20  # what senders put in one chunk (frame)
BATCH_BYTES = 64 << 20  # what senders put in one request
MAX_CHUNK = 64 << 20  # the largest frame a receiver accepts
MAX_REQUEST = 256 << 20  # the largest request body a receiver reads
FRAME_HEAD = struct.Struct("<I32s")  # payload length, BLAKE3 of the payload
FRAMES_TYPE = "application/x-modelvc-frames"  # the Content-Type of a framed body


def hasher(data: bytes | bytearray | memoryview) -> blake3.blake3:
    threads = blake3.blake3.AUTO if len(data) >= 1 << 20 else 1  # both cores on a chunk
    return blake3.blake3(data, max_threads=threads)


def digest(data: bytes | bytearray | memoryview) -> str:
    """BLAKE3 hex of an upload chunk."""
    return hasher(data).hexdigest()


def framed_size(n: int) -> int:
    """The request body that carries N payload bytes in frames of CHUNK_BYTES."""
    return n + FRAME_HEAD.size * -(-n // CHUNK_BYTES)


def frames(pieces: Iterator[bytes], n: int, sent: Callable[[int], None] | None = None
           ) -> Iterator[bytes]:
    """A request body: the next N bytes of PIECES (CHUNK_BYTES each but the last, as
    `rechunk` makes them) as frames. SENT(len) is called once a frame's payload has
    been handed to the transport (progress in bytes)."""
    done = 0
    while done < n:
        piece = next(pieces, None)
        if piece is None or done + len(piece) > n:
            raise StorageError(f"the source's stream ended (or ran over) at byte {done} of "
                               f"{n}", hint="run the transfer again")
        yield FRAME_HEAD.pack(len(piece), hasher(piece).digest())
        yield piece
        done += len(piece)
        if sent:
            sent(len(piece))


def rechunk(chunks: Iterator[bytes] | list[bytes], size: int = CHUNK_BYTES
            ) -> Iterator[bytes]:
    """CHUNKS regrouped into pieces of SIZE bytes (the last may be shorter)."""
    buf = bytearray()
    for c in chunks:
        if not buf and len(c) == size:  # already the right size (a local source): no copy
            yield c
            continue
        buf += c
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


class FrameReader:
    """Frames out of a request body that arrives in pieces of any size."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, piece: bytes) -> Iterator[tuple[bytes, str]]:
        """The frames completed by PIECE: (payload, BLAKE3 hex it claims)."""
        self._buf += piece
        head = FRAME_HEAD.size
        while len(self._buf) >= head:
            n, claimed = FRAME_HEAD.unpack_from(self._buf)
            if not 0 < n <= MAX_CHUNK:
                raise UsageError(f"malformed upload frame (payload of {n} bytes)")
            if len(self._buf) < head + n:
                return
            with memoryview(self._buf) as view:
                payload = bytes(view[head:head + n])
            del self._buf[:head + n]
            yield payload, claimed.hex()

    def close(self) -> None:
        if self._buf:
            raise UsageError("the upload body ends inside a frame")
