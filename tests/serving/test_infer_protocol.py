"""The gateway's own HTTP protocol for infer requests (serving/infer_protocol.py) on a
real gateway over raw sockets: pipelined requests answered in order whether the
inference ran on the loop or in a thread (or waited for a version to load) and whether
uvicorn's path or the protocol's answered them; bodies in pieces and chunked; requests
it leaves to uvicorn (Expect: 100-continue, connection: close, a query string)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import numpy as np

from modelvc.serving.gateway import INLINE_ELEMENTS

from .conftest import Start

ROW = [0.0] * 64


def _doc(rows: int = 1) -> bytes:
    return json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 64],
                                   "data": ROW * rows}]}).encode()


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _answers(s: socket.socket, n: int) -> list[tuple[int, dict[str, str], Any]]:
    """N answers read off S in order (after any 100 Continue): (status, headers, JSON
    body)."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(out)} answers: {buf[:200]!r}"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] == "100":  # 100 Continue: the answer follows
            continue
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        size = int(headers["content-length"])
        while len(buf) < size:
            chunk = s.recv(65536)
            assert chunk, "closed inside a body"
            buf += chunk
        body, buf = buf[:size], buf[size:]
        out.append((int(lines[0].split()[1]), headers, json.loads(body)))
    return out


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=120)


def test_pipelined_requests_are_answered_in_order(serve_reg: Any,
                                                  start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)
    big = INLINE_ELEMENTS // 64 + 10  # too many elements to run on the loop: a thread
    batch = [
        _post("/v2/models/digits/infer", _doc()),  # on the loop
        _post("/v2/models/digits/versions/1/infer", _doc()),  # loads v1 pinned: waits
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",  # uvicorn's path
        _post("/v2/models/digits/infer", _doc(big)),  # in a thread
        _post("/v2/models/digits/infer", _doc(2)),
        _post("/v2/models/digits/feedback", b'{"id": "none", "label": 1}'),  # uvicorn's
        _post("/v2/models/digits/infer", _doc(3)),
    ]
    with _connect(srv.url) as s:
        s.sendall(b"".join(batch))
        got = _answers(s, len(batch))
    statuses = [g[0] for g in got]
    assert statuses == [200, 200, 200, 200, 200, 404, 200], got
    rows = [len(g[2]["outputs"][0]["data"]) for g in got if "outputs" in g[2]]
    assert rows == [1, 1, big, 2, 3]
    assert got[2][2] == {"live": True}
    assert got[1][1]["x-modelvc-version"] == "1"
    assert got[0][1]["content-type"] == "application/json"


def test_a_body_in_pieces_and_a_chunked_body(serve_reg: Any, start_gateway: Start) -> None:
    srv = start_gateway(serve_reg, body_timeout=60)
    body = _doc(4)
    with _connect(srv.url) as s:
        whole = _post("/v2/models/digits/infer", body)
        cut = len(whole) - len(body)
        for piece in (whole[:cut - 3], whole[cut - 3:cut + 5], whole[cut + 5:cut + 400],
                      whole[cut + 400:]):
            s.sendall(piece)
            time.sleep(0.05)
        chunked = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n"
                           for p in (body[:100], body[100:])) + b"0\r\n\r\n"
        s.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        got = _answers(s, 2)
    assert [g[0] for g in got] == [200, 200], got
    assert [np.asarray(g[2]["outputs"][0]["data"]).size for g in got] == [4, 4]


def test_requests_left_to_uvicorn_answer_the_same(serve_reg: Any,
                                                  start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)
    body = _doc()
    with _connect(srv.url) as s:
        s.sendall(_post("/v2/models/digits/infer?trace=1", body))
        s.sendall(_post("/v2/models/digits/infer", body, "Expect: 100-continue\r\n"))
        s.sendall(_post("/v2/models/nope/infer", body))  # the protocol's own 404
        got = _answers(s, 3)
        assert [g[0] for g in got] == [200, 200, 404], got
        assert "not served here" in got[2][2]["error"]
        s.sendall(_post("/v2/models/digits/infer", body, "Connection: close\r\n"))
        (status, headers, _), = _answers(s, 1)
        assert status == 200 and headers.get("connection") == "close"
        assert s.recv(1) == b""  # and it closed
