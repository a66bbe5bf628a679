"""Hostile input against a real gateway (issue 12 findings 3, 5, 6): capped bodies and
decompression bombs answered 413, bodies that never finish answered 408, and inputs
that once answered 500 answered with a 4xx JSON error."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from tests.services.bombs import bomb
from tests.services.rawhttp import raw_request, read_answer

from .conftest import Digits, Start

ROW = [0.0] * 64


def _request(url: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _raw(url: str, head: str, body: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    return raw_request(host, int(port), head, body)


def _infer_doc(**item: Any) -> bytes:
    inp = {"name": "X", "datatype": "FP32", "shape": [1, 64], "data": ROW} | item
    return json.dumps({"inputs": [inp]}).encode()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_decompression_bomb_is_413(serve_reg: Any, start_gateway: Start,
                                     encoding: str) -> None:
    srv = start_gateway(serve_reg)  # defaults: bodies inflate to at most 256 MiB
    body = bomb(encoding, 512)
    assert len(body) < 1 << 20
    status, doc = _request(srv.url, "/v2/models/digits/infer", body,
                           {"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert status == 413, doc
    assert "256 MiB" in doc["error"]
    # A compressed body within the bound still works.
    status, doc = _request(srv.url, "/v2/models/digits/infer", gzip.compress(_infer_doc()),
                           {"Content-Encoding": "gzip"})
    assert status == 200, doc


def test_a_body_over_the_cap_is_413_before_it_is_read(serve_reg: Any,
                                                      start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)  # defaults: a body is at most 64 MiB
    head = ("POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 400000000\r\n")
    status, data = _raw(srv.url, head, b"[" * 65536)
    assert status == 413, data[:300]
    # the Open Inference Protocol's error body, as every other error of a gateway
    assert b'{"error": "the request body is larger than this route accepts' in data, data
    # Chunked (no length to refuse up front): cut off at the cap.
    piece = b"x" * (1 << 20)
    chunked = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n") * 66
    head = ("POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n")
    status, data = _raw(srv.url, head, chunked)
    assert status == 413, data[:300]


def test_a_body_that_never_finishes_is_answered_408(serve_reg: Any,
                                                    start_gateway: Start) -> None:
    srv = start_gateway(serve_reg, body_timeout=2)
    head = ("POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n")
    status, data = _raw(srv.url, head, b'{"inputs": [')
    assert status == 408, data[:300]


def test_headers_that_never_finish_are_answered_408(serve_reg: Any,
                                                    start_gateway: Start) -> None:
    """A request head sent a byte at a time, then never finished (uvicorn alone holds
    it forever): 408 after header_timeout (modelvc.httpproto)."""
    srv = start_gateway(serve_reg, header_timeout=2)
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        for byte in b"POST /v2/models/digits/infer HTTP/1.1\r\nHost":
            s.sendall(bytes([byte]))
        status, data = read_answer(s)
    assert status == 408, data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "HeaderTimeout"


def _deep(n: int = 100_000) -> bytes:
    return b"[" * n + b"]" * n


_BINARY = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2**40, 2**40],
                                  "parameters": {"binary_data_size": 0}}]}).encode()
TWO = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64], "data": ROW}] * 2}
# (id, path, body or None for a GET, headers)
CASES: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("shape-holds-a-bool", "/v2/models/digits/infer", _infer_doc(shape=[True, 64]), {}),
    ("int64-beyond-range", "/v2/models/digits/infer",
     _infer_doc(datatype="INT64", data=[2**70] * 64), {}),
    ("deep-json-infer", "/v2/models/digits/infer", _deep(), {}),
    ("deep-json-feedback", "/v2/models/digits/feedback", _deep(), {}),
    ("shape-product-overflows", "/v2/models/digits/infer",
     _infer_doc(shape=[4294967296, 4294967296]), {}),
    ("shape-product-huge-binary", "/v2/models/digits/infer", _BINARY,
     {"Inference-Header-Content-Length": str(len(_BINARY))}),
    ("version-beyond-int64", "/v2/models/digits/versions/99999999999999999999/infer",
     _infer_doc(), {}),
    ("status-since-nan", "/modelvc/status?since=nan", None, {}),
    ("status-since-inf", "/modelvc/status?since=inf", None, {}),
    ("status-since-1e20", "/modelvc/status?since=1e20", None, {}),
    ("epoch-header-5000-digits", "/v2/models/digits/infer", _infer_doc(),
     {"X-Modelvc-Epoch": "9" * 5000}),
    ("header-length-5000-digits", "/v2/models/digits/infer", _infer_doc(),
     {"Inference-Header-Content-Length": "9" * 5000}),
    ("duplicate-input-names", "/v2/models/digits/infer", json.dumps(TWO).encode(), {}),
    # found by the full campaign (tests/campaign/test_fuzz_parsers.py, 5000 examples)
    ("outputs-not-a-list", "/v2/models/digits/infer",
     json.dumps({**json.loads(_infer_doc()), "outputs": True}).encode(), {}),
    ("feedback-label-beyond-int64", "/v2/models/digits/feedback",
     json.dumps({"id": "r-hostile", "label": 2**70}).encode(), {}),
]


@pytest.mark.parametrize(("path", "body", "headers"), [pytest.param(*c[1:], id=c[0])
                                                       for c in CASES])
def test_bad_input_is_a_4xx_json_error(serve_reg: Any, start_gateway: Start, digits: Digits,
                                       path: str, body: bytes | None,
                                       headers: dict[str, str]) -> None:
    srv = start_gateway(serve_reg)
    # A prediction to give feedback on.
    status, _ = _request(srv.url, "/v2/models/digits/infer",
                         json.dumps({"id": "r-hostile", "inputs": [{
                             "name": "X", "datatype": "FP32", "shape": [1, 64],
                             "data": np.asarray(digits.x[0]).tolist()}]}).encode())
    assert status == 200
    status, doc = _request(srv.url, path, body, headers)
    assert 400 <= status < 500, (status, doc)
    assert isinstance(doc, dict)


def test_grpc_bad_input_is_invalid_argument(serve_reg: Any, start_gateway: Start) -> None:
    """The same inputs over OIP gRPC: INVALID_ARGUMENT, never INTERNAL."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from tests.services.ports import free_port

    port = free_port()
    start_gateway(serve_reg, grpc_port=port)
    overflow = service_pb2.ModelInferRequest(model_name="digits")
    t = overflow.inputs.add(name="X", datatype="FP32", shape=[4294967296, 4294967296])
    t.contents.fp32_contents.extend(ROW)
    twice = service_pb2.ModelInferRequest(model_name="digits")
    for _ in range(2):
        t = twice.inputs.add(name="X", datatype="FP32", shape=[1, 64])
        t.contents.fp32_contents.extend(ROW)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        for req, why in ((overflow, "more elements"), (twice, "given twice")):
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(req)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert why in err.value.details()
