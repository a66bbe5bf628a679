"""Resumable uploads into a server's upload sessions, for commits (raw segments) and
pushes (stored objects) alike.

`Session` speaks the one upload route, /api/v1/uploads/{id}: GET says how much the
server holds for (this token's subject, kind, id, size); PUT appends a batch of framed
chunks (modelvc.wire.frames) from an offset; the request that completes the session
has the whole verified and stored by the server. `resume` is the retry policy around
any such sink (the local one included): ask, send the rest, ask again after a moved
session or a refused chunk, restart at 0 after a failed verification of a resumed
session, and send the whole in one request when the session keeps moving (a balancer
spreading requests over backends that do not share their spool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import UNREACHABLE_RESUME_HINT, ChunkRefused, CorruptObject, SessionMoved
from ..wire.frames import BATCH_BYTES, FRAMES_TYPE, framed_size, frames
from .transport import Transport

RESTARTS = 3  # per object: re-asks after a refused chunk or a failed verification
MOVED_WHOLE = 2  # a session that moved this often: the object goes whole in one request
RESUME_HINT = UNREACHABLE_RESUME_HINT  # the same words as a push's or a pull's


def resume(ask: Callable[[], int | None], send: Callable[[int], None],
           whole: Callable[[], None], *, restarts: int = RESTARTS,
           moved_whole: int = MOVED_WHOLE) -> None:
    """Until the receiver holds the object: ASK how much it holds (None: all of it,
    stored), SEND the rest from there (returns once complete)."""
    refused = moved = 0
    while True:
        off = ask()
        if off is None:
            return
        try:
            send(off)
            return
        except SessionMoved:
            # The session holds less than it said: another writer of this subject (ask
            # again), or a balancer that sent the chunk to another backend. When that
            # repeats, the object goes whole in one request instead.
            moved += 1
            if moved >= moved_whole:
                whole()
                return
        except ChunkRefused:  # damaged in transit, not kept: ask again, resend it
            refused += 1
            if refused > restarts:
                raise
        except CorruptObject:
            # The complete whole failed verification; the receiver discarded it. If this
            # attempt resumed a session, restart at byte 0; if every byte of it was
            # fresh, the source's copy is bad (or changed while being sent).
            refused += 1
            if off == 0 or refused > restarts:
                raise


class Session:
    """The server's upload session for one object: KIND "object" (stored bytes, pushed)
    or "raw" (a commit's raw segment; PARAMS say what it is: dtype, shape, ...)."""

    def __init__(self, t: Transport, oid: str, size: int, *, model: str, kind: str,
                 params: dict[str, Any] | None = None) -> None:
        self.t, self.oid, self.size = t, oid, size
        self.path = f"/api/v1/uploads/{oid}"
        self.params = {"model": model, "kind": kind, "size": size, **(params or {})}

    def held(self) -> int | None:
        """How many bytes the server holds (None: the object is stored, nothing to send)."""
        info = self.t.json("GET", self.path, params=self.params, hint=RESUME_HINT)
        return None if info["stored"] else int(info["offset"])

    def send(self, offset: int, pieces: Iterator[bytes],
             sent: Callable[[int], None] | None = None) -> None:
        """PIECES (CHUNK_BYTES each, from OFFSET) in requests of BATCH_BYTES until the
        session is complete. SessionMoved if the server holds other than what it was
        sent; SENT(n) after each frame's n payload bytes went."""
        pos = offset
        while True:
            n = min(self.size - pos, BATCH_BYTES)
            held, complete = self.put(pos, frames(pieces, n, sent), n)
            if complete:
                return
            if held != pos + n:
                raise SessionMoved(f"the server's upload session of {self.oid[:12]} holds "
                                   f"{held} bytes, not {pos + n}", held=held)
            pos = held

    def put(self, offset: int, body: Iterator[bytes], n: int) -> tuple[int, bool]:
        """One request of N payload bytes as frames: (what the server holds, complete)."""
        length = framed_size(n)
        self.t.count(up=length - n)  # frame heads (payloads are counted as they go)
        got = self.t.json("PUT", self.path, params={**self.params, "offset": offset},
                          content=body, hint=RESUME_HINT,
                          headers={"Content-Type": FRAMES_TYPE, "Content-Length": str(length)})
        return int(got["offset"]), bool(got["complete"])
