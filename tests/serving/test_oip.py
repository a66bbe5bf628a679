"""The Open Inference Protocol v2 over real HTTP, with the real tritonclient."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .conftest import Digits, Start


def _client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"))


def _expected(onnx: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    label, prob = sess.run(["label", "probabilities"], {"X": x})
    return label, prob


def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_matches_onnxruntime(serve_reg: Any, digits: Digits,
                                                start_gateway: Start, binary: bool) -> None:
    srv = start_gateway(serve_reg)
    client = _client(srv.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits")
    x = digits.x[:16]
    inp = triton.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label",
                                                                         "probabilities")]
    result = client.infer("digits", [inp], outputs=outs, request_id="r1")
    label, prob = _expected(digits.good, x)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), prob)
    resp = result.get_response()
    assert resp["model_name"] == "digits" and resp["model_version"] == "1"
    assert resp["id"] == "r1"
    # No outputs named: tritonclient asks for every output in binary.
    every = client.infer("digits", [inp])
    np.testing.assert_array_equal(every.as_numpy("label"), label)
    client.close()


def test_metadata_and_version_routing(serve_reg: Any, digits: Digits, tmp_path: Any,
                                      start_gateway: Start) -> None:
    from .conftest import commit_onnx

    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    srv = start_gateway(serve_reg)
    client = _client(srv.url)
    meta = client.get_model_metadata("digits")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "label": "INT64", "probabilities": "FP32"}
    assert client.get_server_metadata()["name"] == "modelvc"
    x = digits.x[:32]
    inp = triton.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    by_channel = client.infer("digits", [inp], model_version="production")
    assert by_channel.get_response()["model_version"] == "1"
    # A version by number that no channel serves is loaded on demand.
    v2 = client.infer("digits", [inp], model_version="2")
    assert v2.get_response()["model_version"] == "2"
    np.testing.assert_array_equal(v2.as_numpy("label"), _expected(digits.better, x)[0])
    assert client.is_model_ready("digits", "v2")
    client.close()


def _row(name: str = "X", datatype: str = "FP32", shape: list[int] | None = None,
         data: Any = None) -> dict[str, Any]:
    shape = shape or [1, 64]
    return {"name": name, "datatype": datatype, "shape": shape,
            "data": data if data is not None else [0.0] * int(np.prod(shape))}


@pytest.mark.parametrize(("body", "expect"), [
    ({"inputs": [_row(name="x")]}, "takes inputs [X FP32[-1, 64]]; unknown ['x']"),
    ({"inputs": [_row(datatype="FP64")]}, "must be FP32, got FP64"),
    ({"inputs": [_row(shape=[1, 63])]}, "must have shape [-1, 64] (-1: any), got [1, 63]"),
    ({"inputs": [_row(data=[1.0, 2.0])]}, "needs 64 values, got 2"),
    ({"inputs": [_row(datatype="FLOAT")]}, "datatype must be one of"),
    ({"inputs": []}, "missing ['X']"),
    ({"input": []}, 'with an "inputs" list'),
    ({"inputs": [_row()], "outputs": [{"name": "logits"}]}, "unknown ['logits']"),
])
def test_bad_requests_say_what_was_expected(serve_reg: Any, start_gateway: Start,
                                            body: dict[str, Any], expect: str) -> None:
    srv = start_gateway(serve_reg)
    status, doc = post(f"{srv.url}/v2/models/digits/infer", body)
    assert status == 400
    assert expect in doc["error"]


def test_bad_binary_and_unknown_targets(serve_reg: Any, start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)
    url = f"{srv.url}/v2/models/digits/infer"
    head = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64],
                                   "parameters": {"binary_data_size": 256}}]}).encode()
    status, doc = post(url, head + b"\0" * 100, {"Inference-Header-Content-Length":
                                                 str(len(head))})
    assert status == 400 and "runs past the end of the body" in doc["error"]
    status, doc = post(url, b"{not json")
    assert status == 400 and "not JSON" in doc["error"]
    status, doc = post(f"{srv.url}/v2/models/nope/infer", {"inputs": [_row()]})
    assert status == 404 and "serving ['digits']" in doc["error"]
    status, doc = post(f"{srv.url}/v2/models/digits/versions/9/infer", {"inputs": [_row()]})
    assert status == 404 and "v9" in doc["error"]
    with pytest.raises(InferenceServerException, match="must be FP32, got INT32"):
        client = _client(srv.url)
        inp = triton.InferInput("X", [1, 64], "INT32")
        inp.set_data_from_numpy(np.zeros((1, 64), np.int32))
        client.infer("digits", [inp])
