"""The load generator's OIP gRPC callers on one event loop (`python -m
modelvc.serving.loadgen grpc://...`): one HTTP/2 connection, CALLERS concurrent unary
ModelInfer calls on it, each caller sending its next call when the answer to its last one
is in (a closed loop), as tritonclient sends them (raw_input_contents).

It writes the frames itself (serving/oipgrpc/http2.py, as the gateway reads them): a
grpc.aio client cost the generator's one core ~0.2 ms per call and, once the gateway's
own HTTP/2 had made a call ~0.14 ms of server CPU, waited for its CPU 880 ms a second
(docs/benchmarks.md, session 16), measuring itself rather than the servers. Each row's
request is serialized once; an answer's trailers and ModelInferResponse are decoded for
its status and the version that answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import numpy as np

from .loadgen_fast import run_loop
from .oipgrpc import http2 as h
from .oipgrpc.calls import NAMES
from .tally import Tally

WINDOW = 16 * 2**20  # what this client lets a server send before a WINDOW_UPDATE


def import_grpcio() -> Any:
    """grpcio, for loadgen.py's thread-per-caller client (the demo's and the tests'
    traffic); neither the gateway nor this generator needs it."""
    try:
        import grpc
    except ImportError as exc:
        raise SystemExit("a grpc:// load needs the grpcio client: pip install grpcio "
                         "(modelvc's test extra brings it with tritonclient[grpc])") from exc
    return grpc


class _Client(asyncio.Protocol):
    """One connection: calls by stream id, answers matched as their frames arrive."""

    def __init__(self, authority: str) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.decoder = h.HeaderDecoder(max_list=2**20)
        self.calls: dict[int, tuple[asyncio.Future[tuple[dict[bytes, bytes], bytes]],
                                    dict[bytes, bytes], bytearray]] = {}
        self.next_sid, self.unacked = 1, 0
        self.max_frame, self.send_window = h.DEFAULT_FRAME, h.DEFAULT_WINDOW
        self.peer_window = h.DEFAULT_WINDOW
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: Exception | None = None
        # :method POST, :scheme http, a :path and :authority, content-type, te: every
        # field a literal the server's table never holds (the same bytes each call)
        self.head = (b"\x83\x86" + h.literal_indexed_name(1, authority.encode()) +
                     h.literal_indexed_name(31, b"application/grpc") +
                     h.literal(b"te", b"trailers"))

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(h.PREFACE + h.settings({h.INITIAL_WINDOW_SIZE: WINDOW,
                                                h.ENABLE_PUSH: 0}) +
                        h.window_update(0, WINDOW - h.DEFAULT_WINDOW))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        for fut, _, _ in self.calls.values():
            if not fut.done():
                fut.set_exception(self.lost)
        if not self.ready.done():
            self.ready.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end, out = 0, []
        for kind, flags, sid, start, end in h.whole_frames(self.buf):
            payload = bytes(self.buf[start:end])
            if kind == h.SETTINGS and not flags & h.ACK:
                for key, value in h.parse_settings(payload):
                    if key == h.MAX_FRAME_SIZE:
                        self.max_frame = value
                    elif key == h.INITIAL_WINDOW_SIZE:
                        self.peer_window = value
                out.append(h.SETTINGS_ACK)
                if not self.ready.done():
                    self.ready.set_result(None)
            elif kind == h.PING and not flags & h.ACK:
                out.append(h.head(8, h.PING, h.ACK, 0) + payload)
            elif kind == h.WINDOW_UPDATE and sid == 0:
                self.send_window += h.u32(payload) & 0x7FFFFFFF
            elif kind in (h.HEADERS, h.DATA, h.RST_STREAM) and sid in self.calls:
                fut, fields, body = self.calls[sid]
                if kind == h.DATA:
                    body += payload[1:len(payload) - payload[0]] if flags & h.PADDED \
                        else payload
                    self.unacked += len(payload)
                elif kind == h.HEADERS:  # servers here send whole blocks, no padding
                    fields.update(self.decoder.decode(payload))
                if kind == h.RST_STREAM or flags & h.END_STREAM:
                    del self.calls[sid]
                    if not fut.done():
                        fut.set_result((fields, bytes(body)))
            elif kind == h.HEADERS:  # a call no one waits for: keep the table in step
                self.decoder.decode(payload)
            elif kind == h.GOAWAY:
                self.lost = ConnectionError("the server sent GOAWAY")
        del self.buf[:end]
        if self.unacked >= WINDOW // 2:
            out.append(h.window_update(0, self.unacked))
            self.unacked = 0
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def call(self, path: bytes, message: bytes, meta: bytes
             ) -> asyncio.Future[tuple[dict[bytes, bytes], bytes]]:
        """Send one unary call (the message fits the windows: a small request)."""
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        sid, self.next_sid = self.next_sid, self.next_sid + 2
        fut: asyncio.Future[tuple[dict[bytes, bytes], bytes]] = \
            asyncio.get_running_loop().create_future()
        self.calls[sid] = (fut, {}, bytearray())
        body = b"\0" + len(message).to_bytes(4, "big") + message
        block = self.head + h.literal_indexed_name(4, path) + meta
        self.send_window -= len(body)
        self.transport.write(h.headers(sid, block, False, self.max_frame) +
                             h.head(len(body), h.DATA, h.END_STREAM, sid) + body)
        return fut


def grpc_closed_loop(url: str, model: str, x: np.ndarray, *, callers: int, seconds: float,
                     started: Callable[[], None] | None = None) -> Tally:
    """CALLERS callers, each one ModelInfer at a time, for SECONDS."""
    from .oipgrpc import messages as pb

    tally = Tally()
    shape = [1, *x.shape[1:]]
    rows = []
    for i in range(len(x)):
        req = pb.ModelInferRequest(model_name=model, raw_input_contents=[
            np.ascontiguousarray(x[i:i + 1], "<f4").tobytes()])
        req.inputs.add(name="X", datatype="FP32", shape=shape)
        rows.append(req.SerializeToString())
    path = f"/{pb.SERVICE}/ModelInfer".encode()
    host, _, port = url.removeprefix("grpc://").rpartition(":")

    async def caller(client: _Client, worker: int, end: float) -> None:
        rng = np.random.default_rng(worker)
        n = 0
        while time.perf_counter() < end:
            # id is field 3 of ModelInferRequest: appended, it sets the request's id
            rid = f"w{worker}-{n}".encode()
            msg = rows[int(rng.integers(0, len(rows)))] + b"\x1a" + bytes((len(rid),)) + rid
            meta = h.literal(b"x-request-key", f"user-{rng.integers(1 << 30)}".encode())
            n += 1
            t0, wall = time.perf_counter(), time.time()
            try:
                fields, body = await client.call(path, msg, meta)
            except (ConnectionError, OSError) as exc:
                tally.failed += 1
                tally.errors.append(f"connection: {exc}")
                await asyncio.sleep(0.01)
                continue
            status = fields.get(b"grpc-status", b"")
            if status != b"0" or len(body) < 5:
                tally.failed += 1
                code = int(status) if status.isdigit() and int(status) < len(NAMES) else 2
                why = unquote(fields.get(b"grpc-message", b"").decode("ascii", "replace"))
                tally.errors.append(f"StatusCode.{NAMES[code]}: {why}")  # as grpcio says
                continue
            dt = time.perf_counter() - t0
            tally.ok += 1
            v = pb.ModelInferResponse.FromString(body[5:]).model_version
            tally.by_version[v] = tally.by_version.get(v, 0) + 1
            tally.latencies.append(dt)
            tally.starts.append(wall)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: _Client(f"{host}:{port}"),
                                                 host, int(port))
        await client.ready  # the server's SETTINGS
        if started is not None:
            started()
        end = time.perf_counter() + seconds
        try:
            await asyncio.gather(*(caller(client, w, end) for w in range(callers)))
        finally:
            if client.transport is not None:
                client.transport.close()

    run_loop(main)
    return tally
