"""gRPC's unary calls over HTTP/2 (h2) in the gateway's own event loop.

grpc.aio runs HTTP/2 in gRPC core's threads and hands every call to the loop's thread:
at 8 callers on one core that hand-off was ~2/3 of a gRPC request's ~350 us (a REST
request costs ~115 us in the same gateway; docs/benchmarks.md sessions 15-16). Here the
frames are parsed in the loop that runs the gateway, and a call costs a Task.

What a gRPC client checks, and so what this speaks (the protocol's wire format:
github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): POST /package.Service/Method
with content-type application/grpc; a body of length-prefixed messages (one per unary
call; a flag byte says whether it is compressed with grpc-encoding); the answer as
headers, the message, then trailers carrying grpc-status and a percent-encoded
grpc-message, or trailers only on an error. Streaming RPCs are answered UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

log = logging.getLogger("modelvc.serving")

# status codes (grpc/doc/statuscodes.md)
OK, CANCELLED, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 0, 1, 3, 5, 7
RESOURCE_EXHAUSTED, FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL = 8, 9, 12, 13
UNAVAILABLE, UNAUTHENTICATED = 14, 16

ACCEPT_ENCODING = b"identity,deflate,gzip"
WINDOW = 4 * 2**20  # a big tensor arrives without waiting on WINDOW_UPDATE rounds
_RESERVED = frozenset((b"content-type", b"te", b"user-agent", b"grpc-timeout",
                       b"grpc-encoding", b"grpc-accept-encoding", b"content-length"))


class GrpcStatus(Exception):
    """A call's non-OK end: grpc-status CODE with MESSAGE as grpc-message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# method name -> handler(request body, metadata) -> (answer body, trailing metadata)
Handler = Callable[[bytes, dict[str, str]], Awaitable[tuple[bytes, list[tuple[str, str]]]]]


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with '%' and bytes outside 0x20-0x7e as %XX."""
    out = bytearray()
    for b in message.encode("utf-8", "replace"):
        out += b"%%%02X" % b if b < 0x20 or b > 0x7E or b == 0x25 else bytes((b,))
    return bytes(out)


def frame(message: bytes) -> bytes:
    """One uncompressed length-prefixed message."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def unframe(body: bytes | bytearray, encoding: bytes | None, limit: int) -> bytes:
    """The one message of a unary call's body; GrpcStatus when it is not one."""
    if len(body) < 5:
        raise GrpcStatus(INTERNAL if body else UNIMPLEMENTED,
                         "the request carries no message (a unary call sends one)")
    flag, size = body[0], int.from_bytes(body[1:5], "big")
    if len(body) != 5 + size:
        raise GrpcStatus(UNIMPLEMENTED if len(body) > 5 + size else INTERNAL,
                         "the request body is not exactly one message "
                         "(streaming calls are not served)")
    message = bytes(body[5:])
    if not flag:
        return message
    if encoding == b"gzip":
        decode: Callable[[bytes], bytes] = gzip.decompress
    elif encoding == b"deflate":
        decode = zlib.decompress
    else:
        raise GrpcStatus(UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not served "
                         f"(use one of {ACCEPT_ENCODING.decode()})")
    try:
        out = decode(message)
    except (OSError, zlib.error, EOFError) as exc:
        raise GrpcStatus(INTERNAL, f"the compressed message does not decode: {exc}") from exc
    if len(out) > limit:
        raise GrpcStatus(RESOURCE_EXHAUSTED, f"the message is {len(out)} bytes "
                         f"uncompressed, over the limit of {limit}")
    return out


@dataclass
class _Stream:
    method: bytes
    meta: dict[str, str]
    encoding: bytes | None
    body: bytearray = field(default_factory=bytearray)
    pending: memoryview | None = None  # answer bytes waiting for flow-control window
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    refused: GrpcStatus | None = None  # decided at the headers; the body is dropped


class _Connection(asyncio.Protocol):
    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.conn = H2Connection(config=server.h2config)
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.closing = False

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self.conn.local_settings = Settings(client=False, initial_values=self.server.settings)
        self.conn.initiate_connection()
        # the connection's own window only grows by WINDOW_UPDATE
        self.conn.increment_flow_control_window(WINDOW - 65_535)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for st in self.streams.values():
            if st.task is not None:
                st.task.cancel()
        self.streams.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:  # h2 has queued a GOAWAY saying why
            log.info("gRPC connection dropped: %s", exc)
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for ev in events:
            if isinstance(ev, DataReceived):
                self._data(ev)
            elif isinstance(ev, RequestReceived):
                self._request(ev.stream_id, ev.headers)
                if ev.stream_ended is not None:
                    self._ended(ev.stream_id)
            elif isinstance(ev, StreamEnded):
                self._ended(ev.stream_id)
            elif isinstance(ev, WindowUpdated):
                self._resume(ev.stream_id)
            elif isinstance(ev, StreamReset):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None and st.task is not None:
                    st.task.cancel()
            elif isinstance(ev, ConnectionTerminated):
                self.closing = True
        self._flush()
        if self.closing and not self.streams:
            self._close()

    # requests
    def _request(self, sid: int, headers: Any) -> None:
        method = path = b""
        ctype: bytes = b""
        encoding: bytes | None = None
        meta: dict[str, str] = {}
        for k, v in headers:
            if k == b":path":
                path = v
            elif k == b":method":
                method = v
            elif k == b"content-type":
                ctype = v
            elif k == b"grpc-encoding":
                encoding = v
            elif k[:1] != b":" and k not in _RESERVED and not k.endswith(b"-bin"):
                meta[k.decode("latin-1")] = v.decode("latin-1")
        st = _Stream(method=b"", meta=meta, encoding=encoding)
        self.streams[sid] = st
        if not ctype.startswith(b"application/grpc"):
            # not a gRPC client: plain HTTP's answer, as grpc-core gives it
            self.streams.pop(sid)
            self.conn.send_headers(sid, [(b":status", b"415"),
                                         (b"content-type", b"text/plain")], end_stream=True)
            return
        service, _, name = path.lstrip(b"/").partition(b"/")
        if method != b"POST" or service != self.server.service or \
                name not in self.server.handlers:
            st.refused = GrpcStatus(UNIMPLEMENTED, f"method {path.decode('latin-1')} is "
                                    "not served")
        elif encoding not in (None, b"identity", b"gzip", b"deflate"):
            st.refused = GrpcStatus(UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not "
                                    f"served (use one of {ACCEPT_ENCODING.decode()})")
        elif self.closing:
            st.refused = GrpcStatus(UNAVAILABLE, "the server is stopping")
        st.method = name
        if st.refused is not None:  # answer now: a stream's client may wait for it
            self._finish(sid, st, st.refused.code, st.refused.message)

    def _data(self, ev: DataReceived) -> None:
        sid = ev.stream_id
        self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        st = self.streams.get(sid)
        if st is None or st.refused is not None:
            return
        if len(st.body) + len(ev.data) > self.server.limit + 5:
            st.refused = GrpcStatus(RESOURCE_EXHAUSTED, "the message is over the "
                                    f"limit of {self.server.limit} bytes")
            st.body = bytearray()
            self._finish(sid, st, st.refused.code, st.refused.message)
            return
        st.body += ev.data

    def _ended(self, sid: int) -> None:
        st = self.streams.get(sid)
        if st is None or st.refused is not None:
            return
        st.task = asyncio.get_running_loop().create_task(self._call(sid, st))

    async def _call(self, sid: int, st: _Stream) -> None:
        try:
            msg = unframe(st.body, st.encoding, self.server.limit)
            st.body = bytearray()
            answer, trailing = await self.server.handlers[st.method](msg, st.meta)
        except GrpcStatus as exc:
            self._finish(sid, st, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler's bug: INTERNAL, the connection lives on
            log.exception("gRPC %s", st.method.decode("latin-1"))
            self._finish(sid, st, INTERNAL, f"{type(exc).__name__}: {exc}")
        else:
            st.trailers = [(b"grpc-status", b"0")]
            st.trailers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailing]
            try:
                self.conn.send_headers(sid, self.server.response_headers)
            except StreamClosedError:  # the caller went away meanwhile
                self.streams.pop(sid, None)
                return
            st.pending = memoryview(frame(answer))
            self._send(sid, st)
        self._flush()
        if self.closing and not self.streams:
            self._close()

    # answers
    def _finish(self, sid: int, st: _Stream, code: int, message: str) -> None:
        """Trailers-only: the status in the one HEADERS frame, as gRPC does on errors."""
        self.streams.pop(sid, None)
        try:
            self.conn.send_headers(sid, [
                *self.server.response_headers, (b"grpc-status", str(code).encode()),
                (b"grpc-message", percent_encode(message))], end_stream=True)
            if self.conn.streams.get(sid) is not None and \
                    not self.conn.streams[sid].closed:  # the caller still sends: stop it
                self.conn.reset_stream(sid, ErrorCodes.NO_ERROR)
        except StreamClosedError:
            pass

    def _send(self, sid: int, st: _Stream) -> None:
        """As much of the answer as flow control lets through, then the trailers."""
        data = st.pending
        try:
            while data is not None and len(data):
                room = min(self.conn.local_flow_control_window(sid),
                           self.conn.max_outbound_frame_size)
                if room <= 0:
                    st.pending = data
                    return  # WindowUpdated resumes
                self.conn.send_data(sid, data[:room].tobytes())
                data = data[room:]
            st.pending = None
            self.conn.send_headers(sid, st.trailers, end_stream=True)
        except StreamClosedError:
            pass
        self.streams.pop(sid, None)

    def _resume(self, sid: int) -> None:
        waiting = [(s, st) for s, st in self.streams.items() if st.pending is not None]
        for s, st in waiting:
            if sid == 0 or s == sid:
                self._send(s, st)

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def goaway(self) -> None:
        """Take no new calls; the ones in flight finish. The GOAWAY is written past h2,
        whose state machine sends nothing more after its own (the graceful first GOAWAY
        of the HTTP/2 spec, section 6.8: last stream id 2^31-1)."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        last = GoAwayFrame(0)
        last.last_stream_id, last.error_code = 2**31 - 1, 0
        self._flush()
        self.transport.write(last.serialize())
        if not self.streams:
            self._close()

    def _close(self) -> None:
        """The final GOAWAY, then the socket."""
        with contextlib.suppress(ProtocolError):  # the client's GOAWAY closed h2 already
            self.conn.close_connection()
        self._flush()
        if self.transport is not None:
            self.transport.close()


class GrpcServer:
    """One service's unary methods on HOST:PORT in the running loop."""

    def __init__(self, service: str, handlers: dict[str, Handler], *,
                 limit: int = 2**31 - 1) -> None:
        self.service = service.encode()
        self.handlers = {k.encode(): v for k, v in handlers.items()}
        self.limit = limit
        self.h2config = H2Configuration(client_side=False, header_encoding=None)
        self.settings = {SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
                         SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                         SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 2**10}
        self.response_headers = [(b":status", b"200"),
                                 (b"content-type", b"application/grpc"),
                                 (b"grpc-accept-encoding", ACCEPT_ENCODING)]
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Stop listening, GOAWAY every connection, wait up to GRACE seconds for the
        calls in flight, then close what is left."""
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.goaway()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while any(c.streams for c in self.connections) and loop.time() < end:
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
