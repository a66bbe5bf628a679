"""The load generator's REST callers on one event loop (`python -m
modelvc.serving.loadgen http://...`): each caller is a keep-alive connection that sends
its next request when the answer to the last one is in (a closed loop). No thread per
caller, no http.client (which parses every answer's headers with the email package)
and each row's JSON encoded once: the generator must cost far less per request than
the servers it measures, on the one core it gets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from .tally import Tally


class Requests:
    """The bytes of OIP infer requests, each row's JSON (or binary) part built once."""

    def __init__(self, host: str, model: str, x: np.ndarray, *, binary: bool) -> None:
        self.head = f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\n"
        self.x, self.binary = x, binary
        self._rows: dict[int, tuple[bytes, bytes]] = {}

    def _row(self, i: int) -> tuple[bytes, bytes]:
        got = self._rows.get(i)
        if got is None:
            x = self.x[i:i + 1]
            item: dict[str, Any] = {"name": "X", "datatype": "FP32", "shape": list(x.shape)}
            raw = np.ascontiguousarray(x, "<f4").tobytes() if self.binary else b""
            if self.binary:
                item["parameters"] = {"binary_data_size": len(raw)}
            else:
                item["data"] = x.reshape(-1).tolist()
            got = self._rows[i] = (json.dumps({"inputs": [item]}).encode(), raw)
        return got

    def make(self, i: int, req_id: str, key: str) -> bytes:
        doc, raw = self._row(i)
        doc = b'{"id":"' + req_id.encode() + b'",' + doc[1:]
        extra = f"Inference-Header-Content-Length: {len(doc)}\r\n" if raw else ""
        return (f"{self.head}Content-Type: application/"
                f"{'octet-stream' if raw else 'json'}\r\nX-Request-Key: {key}\r\n"
                f"Content-Length: {len(doc) + len(raw)}\r\n{extra}\r\n").encode() + doc + raw


def parse_response(buf: bytes) -> tuple[int, dict[bytes, bytes], bytes, bytes] | None:
    """(status, headers, body, rest of BUF) once a whole answer is in BUF, else None.
    Answers must carry a Content-Length (both servers' do)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(b":") for line in lines[1:])}
    if b"content-length" not in headers:
        raise ConnectionError("an answer without Content-Length")
    n = int(headers[b"content-length"])
    if len(buf) < end + 4 + n:
        return None
    return (int(lines[0].split(None, 2)[1]), headers, buf[end + 4:end + 4 + n],
            buf[end + 4 + n:])


class _Caller(asyncio.Protocol):
    def __init__(self, run: _Run, worker: int) -> None:
        self.run, self.worker = run, worker
        self.rng = np.random.default_rng(worker)
        self.n = 0
        self.buf = b""
        self.t0 = self.wall = 0.0
        self.transport: Any = None  # an asyncio.Transport (uvloop's is not a subclass)
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.run.stopped:
            self.transport.close()
            return
        i = int(self.rng.integers(0, len(self.run.requests.x)))
        req = self.run.requests.make(i, f"w{self.worker}-{self.n}",
                                     f"user-{self.rng.integers(1 << 30)}")
        self.n += 1
        self.waiting = True
        self.t0, self.wall = time.perf_counter(), time.time()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            got = parse_response(self.buf)
        except (ConnectionError, ValueError, IndexError) as exc:
            self._failed(repr(exc))
            return
        if got is None:
            return
        status, headers, body, self.buf = got
        dt = time.perf_counter() - self.t0
        self.waiting = False
        t = self.run.tally
        if status == 200:
            t.ok += 1
            v = str(json.loads(body).get("model_version"))
            t.by_version[v] = t.by_version.get(v, 0) + 1
            t.latencies.append(dt)
            t.starts.append(self.wall)
        else:
            t.failed += 1
            t.errors.append(f"{status}: {body[:200]!r}")
        if headers.get(b"connection", b"").lower() == b"close":
            self._reconnect()
        else:
            self.send()

    def _failed(self, why: str) -> None:
        self.run.tally.failed += 1
        self.run.tally.errors.append(why)
        self.waiting = False
        self._reconnect()

    def _reconnect(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.buf = b""
        if not self.run.stopped:
            self.run.connect(self.worker)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and not self.run.stopped:  # the server closed it
            self.transport = None
            if self.waiting:
                self._failed(f"connection lost: {exc!r}")
            else:
                self._reconnect()


class _Run:
    def __init__(self, host: str, port: int, requests: Requests) -> None:
        self.host, self.port, self.requests = host, port, requests
        self.tally = Tally()
        self.stopped = False
        self.pending: set[asyncio.Task[Any]] = set()

    def connect(self, worker: int) -> None:
        loop = asyncio.get_running_loop()

        async def go() -> None:
            try:
                await loop.create_connection(lambda: _Caller(self, worker), self.host,
                                             self.port)
            except OSError as exc:
                self.tally.failed += 1
                self.tally.errors.append(f"connect: {exc!r}")
                await asyncio.sleep(0.05)
                if not self.stopped:
                    self.connect(worker)

        task = loop.create_task(go())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)


def closed_loop(url: str, model: str, x: np.ndarray, *, callers: int, seconds: float,
                binary: bool = False, started: Callable[[], None] | None = None) -> Tally:
    """CALLERS keep-alive connections, each one request at a time, for SECONDS."""
    host, _, port = url.removeprefix("http://").partition(":")
    run = _Run(host, int(port or 80), Requests(host, model, x, binary=binary))

    async def main() -> None:
        if started is not None:
            started()
        for w in range(callers):
            run.connect(w)
        await asyncio.sleep(seconds)
        run.stopped = True
        await asyncio.gather(*run.pending, return_exceptions=True)

    run_loop(main)
    return run.tally


def run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run main() to its end on a loop of its own (uvloop where installed)."""
    def go() -> None:
        try:
            import uvloop  # the serve extra's: a cheaper loop, for the generator too

            uvloop.run(main())
        except ImportError:
            asyncio.run(main())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        go()
    else:
        # Called under a running loop (a notebook, a sync Playwright session in the same
        # thread): a loop cannot nest, so the generator gets a thread of its own.
        t = threading.Thread(target=go, name="loadgen")
        t.start()
        t.join()
