"""One client's HTTP/2 connection carrying gRPC unary calls, in the gateway's event loop.

The frames a gRPC client sends are few (SETTINGS, HEADERS [+ CONTINUATION], DATA,
WINDOW_UPDATE, PING, RST_STREAM, GOAWAY), so they are parsed here directly: the h2
package's general state machine cost ~40 % of a call's CPU at 8 callers (py-spy, session
16). What a peer may get wrong ends as HTTP/2 says (a GOAWAY with the error for the
connection, an RST_STREAM for one stream); every call's outcome is a gRPC status.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from . import http2 as h
from .calls import (
    ACCEPT_ENCODING,
    INTERNAL,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    UNIMPLEMENTED,
    Endpoint,
    GrpcStatus,
    frame,
    percent_encode,
    unframe,
)

log = logging.getLogger("modelvc.serving")

WINDOW = 4 * 2**20  # a big tensor arrives without waiting on WINDOW_UPDATE rounds
MAX_STREAMS = 1000
MAX_HEADER_LIST = 64 * 2**10
LOCAL_SETTINGS = {h.MAX_CONCURRENT_STREAMS: MAX_STREAMS, h.INITIAL_WINDOW_SIZE: WINDOW,
                  h.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST, h.ENABLE_PUSH: 0}
GREETING = h.settings(LOCAL_SETTINGS) + h.window_update(0, WINDOW - h.DEFAULT_WINDOW)
# the answer's headers: the same bytes for every call (no dynamic table)
ANSWER_HEADERS = (h.STATUS_200 + h.literal_indexed_name(h.CONTENT_TYPE, b"application/grpc")
                  + h.literal(b"grpc-accept-encoding", ACCEPT_ENCODING))
OK_TRAILER = h.literal(b"grpc-status", b"0")
_RESERVED = frozenset((b"content-type", b"te", b"user-agent", b"grpc-timeout",
                       b"grpc-encoding", b"grpc-accept-encoding", b"content-length"))


class PeerError(Exception):
    """The peer broke HTTP/2: the connection ends with GOAWAY(CODE)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass
class _Stream:
    method: bytes = b""
    meta: dict[str, str] = field(default_factory=dict)
    encoding: bytes | None = None
    body: bytearray = field(default_factory=bytearray)
    unacked: int = 0  # bytes received and not yet returned by WINDOW_UPDATE
    window: int = h.DEFAULT_WINDOW  # what the peer lets us send
    remote_closed: bool = False
    pending: memoryview | None = None  # an answer waiting for window
    trailers: bytes = b""
    task: asyncio.Task[None] | None = None
    refused: bool = False  # answered at its headers; its body is dropped


class Connection(asyncio.Protocol):
    def __init__(self, endpoint: Endpoint, connections: set[Connection]) -> None:
        self.endpoint, self.connections = endpoint, connections
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.preface = False
        self.decoder = h.HeaderDecoder(max_list=MAX_HEADER_LIST)
        self.streams: dict[int, _Stream] = {}
        self.last_sid = 0
        self.continuing: tuple[int, int, bytearray] | None = None  # sid, flags, block
        self.send_window = h.DEFAULT_WINDOW  # the connection's, as the peer grants it
        self.peer_window = h.DEFAULT_WINDOW  # the peer's INITIAL_WINDOW_SIZE
        self.max_frame = h.DEFAULT_FRAME
        self.unacked = 0  # the connection's received bytes not yet returned
        self.out: list[bytes] = []
        self.closing = False

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.connections.add(self)
        transport.write(GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        for st in self.streams.values():
            if st.task is not None:
                st.task.cancel()
        self.streams.clear()
        self.transport = None

    # a caller that does not read its answers stops being read (TCP then stops it)
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._frames()
        except PeerError as exc:
            log.info("gRPC connection dropped: %s", exc)
            self._abort(exc.code, str(exc))
            return
        except Exception as exc:  # a bug here: this connection ends, the server lives on
            log.exception("gRPC connection")
            self._abort(h.INTERNAL_ERROR, f"{type(exc).__name__}")
            return
        self._flush()
        if self.closing and not self.streams:
            self._close()

    # frames in
    def _frames(self) -> None:
        buf, at = self.buf, 0
        if not self.preface:
            if len(buf) < len(h.PREFACE):
                if not h.PREFACE.startswith(bytes(buf)):
                    raise PeerError(h.PROTOCOL_ERROR, "not HTTP/2 (gRPC needs it)")
                return
            if buf[:len(h.PREFACE)] != h.PREFACE:
                raise PeerError(h.PROTOCOL_ERROR, "not HTTP/2 (gRPC needs it)")
            self.preface, at = True, len(h.PREFACE)
        end = at
        with memoryview(buf) as mv:
            try:  # we never raise MAX_FRAME_SIZE
                for kind, flags, sid, start, end in h.whole_frames(buf, at, h.DEFAULT_FRAME):
                    self._frame(kind, flags, sid, mv[start:end])
            except h.FrameTooLarge as exc:
                raise PeerError(h.FRAME_SIZE_ERROR, str(exc)) from exc
        del buf[:end]

    def _frame(self, kind: int, flags: int, sid: int, payload: memoryview) -> None:
        if self.continuing is not None and kind != h.CONTINUATION:
            raise PeerError(h.PROTOCOL_ERROR, "a header block was cut by a frame")
        if kind == h.DATA:
            self._data(flags, sid, payload)
        elif kind == h.HEADERS:
            self._headers(flags, sid, payload)
        elif kind == h.CONTINUATION:
            if self.continuing is None or self.continuing[0] != sid:
                raise PeerError(h.PROTOCOL_ERROR, "CONTINUATION out of place")
            self.continuing[2].extend(payload)
            if len(self.continuing[2]) > MAX_HEADER_LIST * 2:
                raise PeerError(h.PROTOCOL_ERROR, "a header block over the limit")
            if flags & h.END_HEADERS:
                sid, first_flags, block = self.continuing
                self.continuing = None
                self._header_block(sid, first_flags, bytes(block))
        elif kind == h.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == h.SETTINGS:
            self._settings(flags, sid, payload)
        elif kind == h.PING:
            if len(payload) != 8 or sid:
                raise PeerError(h.FRAME_SIZE_ERROR, "a PING is 8 bytes on stream 0")
            if not flags & h.ACK:
                self.out += [h.head(8, h.PING, h.ACK, 0), bytes(payload)]
        elif kind == h.RST_STREAM:
            st = self.streams.pop(sid, None)
            if st is not None and st.task is not None:
                st.task.cancel()
        elif kind == h.GOAWAY:
            self.closing = True  # the calls in flight finish
        elif kind == h.PUSH_PROMISE:
            raise PeerError(h.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown types: nothing to do

    def _headers(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0 or sid % 2 == 0:
            raise PeerError(h.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        start, end = 0, len(payload)
        if flags & h.PADDED:
            if not payload:
                raise PeerError(h.PROTOCOL_ERROR, "padding with no length")
            start, end = 1, end - payload[0]
        if flags & h.PRIORITY_FLAG:
            start += 5
        if end < start:
            raise PeerError(h.PROTOCOL_ERROR, "padding longer than the frame")
        if not flags & h.END_HEADERS:
            self.continuing = (sid, flags, bytearray(payload[start:end]))
            return
        self._header_block(sid, flags, bytes(payload[start:end]))

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        try:  # decoded even when refused: the table is the connection's
            fields = self.decoder.decode(block)
        except h.HpackError as exc:
            raise PeerError(h.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        st = self.streams.get(sid)
        if st is not None:  # trailers from a client: only the end matters
            if flags & h.END_STREAM:
                self._remote_end(sid, st)
            return
        if sid <= self.last_sid:
            raise PeerError(h.PROTOCOL_ERROR, f"stream {sid} reused")
        self.last_sid = sid
        if len(self.streams) >= MAX_STREAMS:
            self.out.append(h.rst_stream(sid, h.REFUSED_STREAM))
            return
        self._request(sid, fields, bool(flags & h.END_STREAM))

    def _request(self, sid: int, fields: Any, ended: bool) -> None:
        st = _Stream(window=self.peer_window)
        self.streams[sid] = st
        method = path = ctype = b""
        for k, v in fields:
            if k == b":path":
                path = v
            elif k == b":method":
                method = v
            elif k == b"content-type":
                ctype = v
            elif k == b"grpc-encoding":
                st.encoding = v
            elif k[:1] != b":" and k not in _RESERVED and not k.endswith(b"-bin"):
                st.meta[k.decode("latin-1")] = v.decode("latin-1")
        if not ctype.startswith(b"application/grpc"):  # not gRPC: plain HTTP's answer
            self.streams.pop(sid)
            self.out.append(h.headers(sid, h.literal_indexed_name(h.STATUS, b"415"), True,
                                      self.max_frame))
            if not ended:
                self.out.append(h.rst_stream(sid, h.NO_ERROR))
            return
        st.remote_closed = ended
        service, _, name = path.lstrip(b"/").partition(b"/")
        refusal = None
        if method != b"POST" or service != self.endpoint.service or \
                name not in self.endpoint.handlers:
            refusal = GrpcStatus(UNIMPLEMENTED, f"method {path.decode('latin-1')} is not "
                                 "served")
        elif st.encoding not in (None, b"identity", b"gzip", b"deflate"):
            refusal = GrpcStatus(UNIMPLEMENTED, f"grpc-encoding {st.encoding!r} is not "
                                 f"served (use one of {ACCEPT_ENCODING.decode()})")
        elif self.closing:
            refusal = GrpcStatus(UNAVAILABLE, "the server is stopping")
        st.method = name
        if refusal is not None:  # now: a streaming caller may wait for it
            st.refused = True
            self._status(sid, st, refusal.code, refusal.message)
        elif ended:
            self._start(sid, st)

    def _data(self, flags: int, sid: int, payload: memoryview) -> None:
        size = len(payload)
        self.unacked += size
        if self.unacked >= WINDOW // 2:
            self.out.append(h.window_update(0, self.unacked))
            self.unacked = 0
        st = self.streams.get(sid)
        if st is None or st.refused or st.remote_closed:
            return  # a stream already answered (or never opened): its bytes are dropped
        start, end = 0, size
        if flags & h.PADDED:
            if not size or payload[0] >= size:
                raise PeerError(h.PROTOCOL_ERROR, "bad padding")
            start, end = 1, size - payload[0]
        if len(st.body) + end - start > self.endpoint.limit + 5:
            st.refused, st.body = True, bytearray()
            self._status(sid, st, RESOURCE_EXHAUSTED, "the message is over the limit of "
                         f"{self.endpoint.limit} bytes")
            return
        st.body += payload[start:end]
        if flags & h.END_STREAM:
            st.remote_closed = True
            self._start(sid, st)
            return
        st.unacked += size
        if st.unacked >= WINDOW // 2:
            self.out.append(h.window_update(sid, st.unacked))
            st.unacked = 0

    def _remote_end(self, sid: int, st: _Stream) -> None:
        if not st.remote_closed and not st.refused:
            st.remote_closed = True
            self._start(sid, st)

    def _window_update(self, sid: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise PeerError(h.FRAME_SIZE_ERROR, "a WINDOW_UPDATE is 4 bytes")
        inc = h.u32(payload) & 0x7FFFFFFF
        if sid == 0:
            self.send_window += inc
            for s, st in list(self.streams.items()):
                if st.pending is not None:
                    self._answer(s, st)
        elif (one := self.streams.get(sid)) is not None:
            one.window += inc
            if one.pending is not None:
                self._answer(sid, one)

    def _settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid:
            raise PeerError(h.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & h.ACK:
            return
        if len(payload) % 6:
            raise PeerError(h.FRAME_SIZE_ERROR, "SETTINGS of a bad length")
        for key, value in h.parse_settings(payload):
            if key == h.INITIAL_WINDOW_SIZE:
                if value > h.MAX_WINDOW:
                    raise PeerError(h.FLOW_CONTROL_ERROR, "window over 2^31-1")
                delta, self.peer_window = value - self.peer_window, value
                for st in self.streams.values():
                    st.window += delta
            elif key == h.MAX_FRAME_SIZE:
                if not h.DEFAULT_FRAME <= value <= 2**24 - 1:
                    raise PeerError(h.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self.max_frame = value
        self.out.append(h.SETTINGS_ACK)
        for s, st in list(self.streams.items()):
            if st.pending is not None:
                self._answer(s, st)

    # calls
    def _start(self, sid: int, st: _Stream) -> None:
        st.task = asyncio.get_running_loop().create_task(self._call(sid, st))

    async def _call(self, sid: int, st: _Stream) -> None:
        try:
            msg = unframe(st.body, st.encoding, self.endpoint.limit)
            st.body = bytearray()
            answer, trailing = await self.endpoint.handlers[st.method](msg, st.meta)
        except GrpcStatus as exc:
            self._status(sid, st, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler's bug: INTERNAL, the connection lives on
            log.exception("gRPC %s", st.method.decode("latin-1"))
            self._status(sid, st, INTERNAL, f"{type(exc).__name__}: {exc}")
        else:
            if self.streams.get(sid) is not st:  # the caller reset it meanwhile
                return
            st.trailers = OK_TRAILER + b"".join(
                h.literal(k.lower().encode("ascii", "replace"), v.encode("ascii", "replace"))
                for k, v in trailing)
            self.out.append(h.headers(sid, ANSWER_HEADERS, False, self.max_frame))
            st.pending = memoryview(frame(answer))
            self._answer(sid, st)
        self._flush()
        if self.closing and not self.streams:
            self._close()

    # answers
    def _status(self, sid: int, st: _Stream, code: int, message: str) -> None:
        """Trailers-only, as gRPC ends a call that failed."""
        if self.streams.get(sid) is not st:
            return
        del self.streams[sid]
        block = (ANSWER_HEADERS + h.literal(b"grpc-status", str(code).encode()) +
                 h.literal(b"grpc-message", percent_encode(message[:4000])))
        self.out.append(h.headers(sid, block, True, self.max_frame))
        if not st.remote_closed:  # the caller still sends: tell it to stop
            self.out.append(h.rst_stream(sid, h.NO_ERROR))

    def _answer(self, sid: int, st: _Stream) -> None:
        """As much of the answer as the windows let through, then the trailers."""
        data = st.pending
        assert data is not None
        while len(data):
            n = min(len(data), self.max_frame, self.send_window, st.window)
            if n <= 0:
                st.pending = data
                return  # a WINDOW_UPDATE resumes
            self.out += [h.head(n, h.DATA, 0, sid), data[:n].tobytes()]
            self.send_window -= n
            st.window -= n
            data = data[n:]
        st.pending = None
        self.out.append(h.headers(sid, st.trailers, True, self.max_frame))
        del self.streams[sid]

    def _flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    # ending
    def goaway(self) -> None:
        """Take no new calls; the ones in flight finish (the graceful first GOAWAY of
        RFC 9113 6.8: last stream id 2^31-1)."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.out.append(h.goaway(2**31 - 1, h.NO_ERROR))
        self._flush()
        if not self.streams:
            self._close()

    def _abort(self, code: int, why: str) -> None:
        """GOAWAY with CODE and WHY, then the socket (the calls in flight end with it)."""
        self.out.append(h.goaway(self.last_sid, code, why.encode()[:200]))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        """The final GOAWAY, then the socket."""
        if self.transport is not None:
            self.out.append(h.goaway(self.last_sid, h.NO_ERROR))
            self._flush()
            self.transport.close()
