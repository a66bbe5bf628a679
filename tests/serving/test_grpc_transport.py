"""gRPC over HTTP/2 in one event loop (serving/oipgrpc/transport.py), against the real grpcio
client: metadata both ways, messages larger than every flow-control window, compressed
requests, statuses and their messages, refused methods and streams, many calls at once,
a caller that gives up, garbage on the socket, a stop that lets calls in flight end, a
caller that never reads, and (by hand) the frames grpcio does not send."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from modelvc.serving.oipgrpc.calls import INVALID_ARGUMENT, GrpcStatus, percent_encode
from modelvc.serving.oipgrpc.transport import GrpcServer

SERVICE = "test.Echo"


@dataclass
class Running:
    server: GrpcServer
    loop: asyncio.AbstractEventLoop
    target: str
    release: asyncio.Event  # Slow waits for it
    entered: threading.Event  # set when a Slow call has begun
    cancelled: list[bool]

    def stop(self, grace: float) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(60)


async def echo(body: bytes, meta: dict[str, str]) -> tuple[bytes, list[tuple[str, str]]]:
    return body[::-1], [("x-echo-len", str(len(body))), ("x-seen", meta.get("x-key", ""))]


async def fail(body: bytes, meta: dict[str, str]) -> tuple[bytes, list[tuple[str, str]]]:
    raise GrpcStatus(INVALID_ARGUMENT, body.decode())


async def crash(body: bytes, meta: dict[str, str]) -> tuple[bytes, list[tuple[str, str]]]:
    raise RuntimeError("the handler broke")


@pytest.fixture
def running() -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    state: dict[str, Running] = {}
    ready = threading.Event()
    entered = threading.Event()
    cancelled: list[bool] = []

    async def slow(body: bytes, meta: dict[str, str]) -> tuple[bytes, list[tuple[str, str]]]:
        entered.set()
        try:
            await state["r"].release.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return b"done", []

    async def main() -> None:
        server = GrpcServer(SERVICE, {"Echo": echo, "Fail": fail, "Crash": crash,
                                      "Slow": slow}, limit=64 * 2**20)
        await server.start("127.0.0.1", 0)
        state["r"] = Running(server, loop, f"127.0.0.1:{server.port}", asyncio.Event(),
                             entered, cancelled)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(60)
    assert ready.wait(60)
    yield state["r"]
    state["r"].stop(0)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)
    loop.close()


def _call(ch: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable:
    return ch.unary_unary(f"/{SERVICE}/{name}")


def test_a_call_carries_metadata_both_ways(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        resp, call = _call(ch, "Echo").with_call(b"hello", metadata=(("x-key", "k1"),),
                                                   timeout=60)
        assert resp == b"olleh"
        trailing = dict(call.trailing_metadata())
        assert trailing["x-echo-len"] == "5" and trailing["x-seen"] == "k1"
        assert call.code() == grpc.StatusCode.OK
        assert _call(ch, "Echo")(b"", timeout=60) == b""  # an empty message is a message


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression,
                                         grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_messages_larger_than_the_windows(running: Running,
                                          compression: grpc.Compression) -> None:
    body = bytes(range(256)) * (40 * 2**20 // 256)  # 40 MiB: ten times the window
    opts = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(running.target, options=opts,
                               compression=compression) as ch:
        assert _call(ch, "Echo")(body, timeout=120) == body[::-1]


def test_over_the_limit_is_resource_exhausted(running: Running) -> None:
    opts = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(running.target, options=opts) as ch:
        with pytest.raises(grpc.RpcError) as err:
            _call(ch, "Echo")(b"\0" * (65 * 2**20), timeout=120)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit" in (err.value.details() or "")
        assert _call(ch, "Echo")(b"ab", timeout=60) == b"ba"  # the connection lives on


def test_statuses_keep_their_messages(running: Running) -> None:
    text = "bad input: 100% of 'x' ≠ ü\nsecond line"
    assert percent_encode("a%b\n") == b"a%25b%0A"
    with grpc.insecure_channel(running.target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            _call(ch, "Fail")(text.encode(), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == text
        with pytest.raises(grpc.RpcError) as err:
            _call(ch, "Crash")(b"", timeout=60)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "RuntimeError: the handler broke" in (err.value.details() or "")
        assert _call(ch, "Echo")(b"ok", timeout=60) == b"ko"


def test_unknown_methods_and_streams_are_unimplemented(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        for path in (f"/{SERVICE}/Nope", "/other.Service/Echo"):
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(path)(b"x", timeout=60)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stream = ch.stream_stream(f"/{SERVICE}/Echo")
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([b"a", b"b"]), timeout=60))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert _call(ch, "Echo")(b"still", timeout=60) == b"llits"


def test_many_calls_at_once_on_one_connection(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        echo_call = _call(ch, "Echo")
        futures = [echo_call.future(str(i).encode() * 100, timeout=120) for i in range(300)]
        assert [f.result() for f in futures] == [str(i).encode()[::-1] * 100
                                                 for i in range(300)]


def test_a_caller_that_gives_up_cancels_its_call(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        fut = _call(ch, "Slow").future(b"", timeout=60)
        assert running.entered.wait(60)
        fut.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            fut.result()
        assert _call(ch, "Echo")(b"next", timeout=60) == b"txen"
    for _ in range(600):  # the RST_STREAM reaches the server's loop
        if running.cancelled:
            break
        threading.Event().wait(0.1)
    assert running.cancelled == [True]


def test_garbage_closes_only_its_connection(running: Running) -> None:
    host, port = running.target.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(60)
        got = b""
        while chunk := s.recv(4096):  # h2 answers with a GOAWAY, then the socket closes
            got += chunk
    assert got  # the server's SETTINGS and GOAWAY
    with grpc.insecure_channel(running.target) as ch:
        assert _call(ch, "Echo")(b"fine", timeout=60) == b"enif"


def test_stop_lets_calls_in_flight_finish(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        fut = _call(ch, "Slow").future(b"", timeout=60)
        assert running.entered.wait(60)
        stopping = asyncio.run_coroutine_threadsafe(running.server.stop(60), running.loop)
        threading.Event().wait(0.3)
        assert not stopping.done()  # waits for the call in flight
        running.loop.call_soon_threadsafe(running.release.set)
        assert fut.result(timeout=60) == b"done"
        stopping.result(60)
        with pytest.raises(grpc.RpcError) as err:
            _call(ch, "Echo")(b"late", timeout=60)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_that_never_reads_is_not_buffered_for(running: Running) -> None:
    """Answers pile up to the transport's high-water mark, then the connection is not
    read until they drain: the caller's socket blocks, the server's memory does not grow."""
    import hpack

    from modelvc.serving.oipgrpc import http2 as h

    enc = hpack.Encoder()
    body = frame_of(b"x" * 60_000)
    host, port = running.target.split(":")
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(h.PREFACE + h.settings({h.INITIAL_WINDOW_SIZE: h.MAX_WINDOW}) +
              h.window_update(0, h.MAX_WINDOW - h.DEFAULT_WINDOW))
    s.settimeout(3)
    sent, sid = 0, 1
    try:
        while sent < 2 * 2**30:
            block = enc.encode([(":method", "POST"), (":scheme", "http"),
                                (":path", f"/{SERVICE}/Echo"), (":authority", "x"),
                                ("content-type", "application/grpc"), ("te", "trailers")])
            req = h.headers(sid, block, False, h.DEFAULT_FRAME)
            for at in range(0, len(body), h.DEFAULT_FRAME):
                part = body[at:at + h.DEFAULT_FRAME]
                last = at + h.DEFAULT_FRAME >= len(body)
                req += h.head(len(part), h.DATA, h.END_STREAM if last else 0, sid) + part
            s.sendall(req)
            sent += len(req)
            sid += 2
    except TimeoutError:
        pass
    try:
        assert sent < 2 * 2**30, "the server read 2 GiB of calls it could not answer"
        (conn,) = running.server.connections
        buffered = asyncio.run_coroutine_threadsafe(_buffered(conn), running.loop).result(60)
        assert buffered < 16 * 2**20, buffered
    finally:
        s.close()


async def _buffered(conn: Any) -> int:
    return int(conn.transport.get_write_buffer_size())


def frame_of(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


class Raw:
    """A hand-written HTTP/2 client: the frames grpcio never sends (padding, a header
    block split in CONTINUATIONs, PINGs, protocol errors), and what comes back."""

    def __init__(self, target: str) -> None:
        import hpack

        from modelvc.serving.oipgrpc import http2 as h

        self.h, self.enc, self.dec = h, hpack.Encoder(), hpack.Decoder()
        host, port = target.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.buf = b""
        self.sock.sendall(h.PREFACE + h.settings({}))

    def block(self, path: str, ctype: str = "application/grpc") -> bytes:
        return bytes(self.enc.encode([(":method", "POST"), (":scheme", "http"),
                                      (":path", path), (":authority", "x"),
                                      ("content-type", ctype), ("te", "trailers")]))

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def frame(self) -> tuple[int, int, int, bytes]:
        """The next frame (kind, flags, stream, payload); SETTINGS and WINDOW_UPDATE
        frames are skipped (a SETTINGS is acknowledged)."""
        h = self.h
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + h.parse_head(self.buf, 0)[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError(self.buf)
                self.buf += chunk
            length, kind, flags, sid = h.parse_head(self.buf, 0)
            payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
            if kind == h.SETTINGS and not flags & h.ACK:
                self.send(h.SETTINGS_ACK)
            if kind not in (h.SETTINGS, h.WINDOW_UPDATE):
                return kind, flags, sid, payload

    def answer(self, sid: int) -> tuple[dict[str, str], bytes]:
        """Headers, trailers and body of stream SID, merged."""
        h, fields, body = self.h, {}, b""
        while True:
            kind, flags, got, payload = self.frame()
            assert got == sid, (kind, got)
            if kind == h.HEADERS:
                fields.update(dict(self.dec.decode(payload)))
            elif kind == h.DATA:
                body += payload
            if flags & h.END_STREAM:
                return fields, body


def test_frames_grpcio_does_not_send(running: Running) -> None:
    raw = Raw(running.target)
    h = raw.h
    msg = frame_of(b"padded")
    # HEADERS padded and with a priority, DATA padded
    block = raw.block(f"/{SERVICE}/Echo")
    payload = bytes((3,)) + b"\0\0\0\0\x10" + block + b"\0\0\0"
    raw.send(h.head(len(payload), h.HEADERS, h.END_HEADERS | h.PADDED | h.PRIORITY_FLAG, 1)
             + payload,
             h.head(len(msg) + 5, h.DATA, h.END_STREAM | h.PADDED, 1) + b"\x04" + msg +
             b"\0" * 4)
    fields, body = raw.answer(1)
    assert fields["grpc-status"] == "0" and body == frame_of(b"deddap")
    # a header block in three pieces
    block = raw.block(f"/{SERVICE}/Echo")
    a, b, c = block[:5], block[5:9], block[9:]
    raw.send(h.head(len(a), h.HEADERS, 0, 3) + a, h.head(len(b), h.CONTINUATION, 0, 3) + b,
             h.head(len(c), h.CONTINUATION, h.END_HEADERS, 3) + c,
             h.head(len(msg), h.DATA, h.END_STREAM, 3) + msg)
    fields, body = raw.answer(3)
    assert fields["grpc-status"] == "0" and body == frame_of(b"deddap")
    # PING is answered with its payload
    raw.send(h.head(8, h.PING, 0, 0) + b"12345678")
    assert raw.frame() == (h.PING, h.ACK, 0, b"12345678")
    # not gRPC: HTTP's 415
    raw.send(h.headers(5, raw.block(f"/{SERVICE}/Echo", "text/plain"), True, 16_384))
    fields, _ = raw.answer(5)
    assert fields[":status"] == "415"
    # a caller that resets its stream before sending the body: nothing comes back
    raw.send(h.headers(7, raw.block(f"/{SERVICE}/Echo"), False, 16_384),
             h.rst_stream(7, h.CANCEL),
             h.headers(9, raw.block(f"/{SERVICE}/Echo"), False, 16_384),
             h.head(len(msg), h.DATA, h.END_STREAM, 9) + msg)
    fields, body = raw.answer(9)
    assert body == frame_of(b"deddap")
    # a protocol error ends the connection with a GOAWAY that says why
    raw.send(h.head(0, h.HEADERS, h.END_HEADERS, 2))  # an even stream from a client
    kind, _, _, payload = raw.frame()
    assert kind == h.GOAWAY and int.from_bytes(payload[4:8], "big") == h.PROTOCOL_ERROR
    assert b"HEADERS on stream 2" in payload[8:]
    raw.sock.close()
    with grpc.insecure_channel(running.target) as ch:  # others are served on
        assert _call(ch, "Echo")(b"ok", timeout=60) == b"ko"

