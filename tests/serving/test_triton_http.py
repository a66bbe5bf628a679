"""Triton's extensions over REST with the real tritonclient.http: model configuration,
repository index, inference statistics; every unknown route answers JSON; refused
requests are counted per model and version."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelvc.registry import Registry
from tests.serving.helpers import triton_refused_calls

from .conftest import Digits, Start, commit_onnx
from .test_oip import post


def _input(x: np.ndarray) -> triton.InferInput:
    inp = triton.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def test_config_index_and_statistics(serve_reg: Registry, digits: Digits, tmp_path: Path,
                                     start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    srv = start_gateway(serve_reg)
    client = triton.InferenceServerClient(srv.url.removeprefix("http://"))
    cfg = client.get_model_config("digits")
    assert cfg["name"] == "digits" and cfg["platform"] == "onnxruntime_onnx"
    assert cfg["max_batch_size"] == 0 and cfg["backend"] == "onnxruntime"
    assert cfg["input"] == [{"name": "X", "data_type": "TYPE_FP32", "dims": [-1, 64]}]
    assert {o["name"]: o["data_type"] for o in cfg["output"]} == {
        "label": "TYPE_INT64", "probabilities": "TYPE_FP32"}
    assert cfg["parameters"]["modelvc_version"] == {"string_value": "1"}
    assert client.get_model_config("digits", "2")["parameters"]["modelvc_version"] == {
        "string_value": "2"}
    index = client.get_model_repository_index()
    assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
        ("digits", "1", "READY"), ("digits", "2", "READY")]
    # before any request the served version is listed with zeros, as Triton lists it
    [fresh] = client.get_inference_statistics("digits")["model_stats"]
    assert (fresh["version"], fresh["inference_count"], fresh["execution_count"]) == (
        "1", 0, 0)
    for n in (4, 6):
        client.infer("digits", [_input(digits.x[:n])])
    client.infer("digits", [_input(digits.x[:3])], model_version="2")
    stats = client.get_inference_statistics()["model_stats"]
    by = {s["version"]: s for s in stats}
    assert set(by) == {"1", "2"} and all(s["name"] == "digits" for s in stats)
    assert by["1"]["inference_count"] == 10 and by["1"]["execution_count"] == 2
    assert by["1"]["inference_stats"]["success"]["count"] == 2
    assert by["1"]["inference_stats"]["fail"] == {"count": 0, "ns": 0}
    assert by["2"]["inference_count"] == 3
    one = client.get_inference_statistics("digits", "2")["model_stats"]
    assert [s["version"] for s in one] == ["2"]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_config("nope")
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_inference_statistics("nope")
    client.close()


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/nope", 404), ("GET", "/v2/models/digits/nope", 404),
    ("POST", "/v2/repository/models/digits/load", 404), ("GET", "/v2/models/digits/infer", 405),
    ("DELETE", "/v2", 405),
])
def test_unknown_routes_answer_json(serve_reg: Registry, start_gateway: Start, method: str,
                                    path: str, code: int) -> None:
    srv = start_gateway(serve_reg)
    req = urllib.request.Request(srv.url + path, data=b"{}" if method == "POST" else None,
                                 method=method)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == code
    assert err.value.headers["content-type"] == "application/json"
    assert path in json.loads(err.value.read())["error"]


def test_refused_requests_are_counted_per_model_and_version(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    srv = start_gateway(serve_reg)
    url = f"{srv.url}/v2/models/digits"
    row = {"name": "X", "datatype": "FP32", "shape": [1, 63], "data": [0.0] * 63}
    assert post(f"{url}/infer", {"inputs": [row]})[0] == 400  # signature: v1, stable
    assert post(f"{url}/infer", b"{not json")[0] == 400  # did not parse: stable's version
    assert post(f"{url}/versions/2/infer", {"inputs": [row]})[0] == 400
    reg = srv.gateway.metrics.registry

    def refused(version: str, channel: str) -> float | None:
        return reg.get_sample_value("modelvc_errors_total", {
            "model": "digits", "version": version, "channel": channel,
            "kind": "bad_request"})

    assert refused("v1", "production") == 2
    assert refused("v2", "v2") == 1


def test_every_other_tritonclient_call_is_refused_in_json_or_works(
        serve_reg: Registry, digits: Digits, start_gateway: Start) -> None:
    """The calls docs/serving.md marks refused get a JSON error tritonclient reports
    (never a parse error); async_infer works."""
    srv = start_gateway(serve_reg)
    client = triton.InferenceServerClient(srv.url.removeprefix("http://"))
    for call in triton_refused_calls(client):
        with pytest.raises(InferenceServerException, match="no such route"):
            call()
    x = digits.x[:4]
    done = client.async_infer("digits", [_input(x)]).get_result()
    assert done.as_numpy("label").shape == (4,)
    client.close()
