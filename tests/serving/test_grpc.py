"""The Open Inference Protocol over gRPC with the real, unmodified tritonclient.grpc:
every call of its API that applies, typed contents through its own generated stubs,
version routing, errors, canary/shadow and metrics through the shared gateway, and hot
swaps under gRPC load that fail no request."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelvc.registry import Registry
from modelvc.serving.oipgrpc.build import DESC, compile_proto
from modelvc.serving.runner import BackgroundServer
from tests.services.ports import free_port

from .conftest import Digits, Start, commit_onnx
from .helpers import serving, status, triton_refused_calls, wait_for
from .swapload import Client, swap_under_load


def _start(start_gateway: Start, reg: Registry, models: Any = None) -> tuple[
        BackgroundServer, tg.InferenceServerClient]:
    port = free_port()
    srv = start_gateway(reg, models, grpc_port=port)
    return srv, tg.InferenceServerClient(f"127.0.0.1:{port}")


def _input(x: np.ndarray) -> tg.InferInput:
    inp = tg.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def _expected(onnx: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    label, prob = sess.run(["label", "probabilities"], {"X": x})
    return label, prob


def test_shipped_descriptor_is_the_compiled_proto() -> None:
    assert DESC.read_bytes() == compile_proto()


def test_health_metadata_and_raw_infer(serve_reg: Registry, digits: Digits,
                                       start_gateway: Start) -> None:
    _, client = _start(start_gateway, serve_reg)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("digits", "9")  # no such version: not ready, no error
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "modelvc" and "binary_tensor_data" in meta["extensions"]
    mm = client.get_model_metadata("digits", as_json=True)
    assert mm["platform"] == "onnxruntime_onnx" and mm["versions"] == ["1"]
    assert mm["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert {o["name"]: o["datatype"] for o in mm["outputs"]} == {
        "label": "INT64", "probabilities": "FP32"}
    x = digits.x[:16]
    outs = [tg.InferRequestedOutput("label"), tg.InferRequestedOutput("probabilities")]
    result = client.infer("digits", [_input(x)], outputs=outs, request_id="g1")
    label, prob = _expected(digits.good, x)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), prob)
    resp = result.get_response(as_json=True)
    assert (resp["model_name"], resp["model_version"], resp["id"]) == ("digits", "1", "g1")
    assert resp["parameters"]["modelvc_version"] == {"string_param": "1"}
    only = client.infer("digits", [_input(x)], outputs=[tg.InferRequestedOutput("label")])
    assert [o.name for o in only.get_response().outputs] == ["label"]
    client.close()


def test_typed_contents_through_tritonclients_stub(serve_reg: Registry, digits: Digits,
                                                   start_gateway: Start) -> None:
    port = free_port()
    start_gateway(serve_reg, grpc_port=port)
    x = digits.x[:8]
    req = service_pb2.ModelInferRequest(model_name="digits", id="typed")
    t = req.inputs.add(name="X", datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.reshape(-1).tolist())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        resp = stub.ModelInfer(req)
        # typed in, typed out
        assert not resp.raw_output_contents
        outs = {o.name: o for o in resp.outputs}
        label, prob = _expected(digits.good, x)
        assert list(outs["label"].contents.int64_contents) == label.tolist()
        np.testing.assert_allclose(np.array(outs["probabilities"].contents.fp32_contents),
                                   prob.reshape(-1), rtol=1e-6)
        assert list(outs["label"].shape) == [8]
        bad = service_pb2.ModelInferRequest(model_name="digits")
        b = bad.inputs.add(name="X", datatype="FP32", shape=[1, 64])
        b.contents.fp32_contents.extend([0.0] * 10)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "needs 64 values in contents.fp32_contents, got 10" in err.value.details()


def test_version_routing_and_errors(serve_reg: Registry, digits: Digits, tmp_path: Path,
                                    start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    _, client = _start(start_gateway, serve_reg)
    x = digits.x[:32]
    by_channel = client.infer("digits", [_input(x)], model_version="production")
    assert by_channel.get_response().model_version == "1"
    v2 = client.infer("digits", [_input(x)], model_version="2")  # loaded on demand
    assert v2.get_response().model_version == "2"
    np.testing.assert_array_equal(v2.as_numpy("label"), _expected(digits.better, x)[0])
    assert client.is_model_ready("digits", "v2")
    assert client.get_model_metadata("digits", "2").versions == ["1", "2"]
    cases = [
        (lambda: client.infer("nope", [_input(x)]), "StatusCode.NOT_FOUND",
         "serving ['digits']"),
        (lambda: client.infer("digits", [_input(x)], model_version="9"),
         "StatusCode.NOT_FOUND", "v9"),
        (lambda: client.get_model_metadata("nope"), "StatusCode.NOT_FOUND", "nope"),
    ]
    wrong = tg.InferInput("X", [1, 64], "INT32")
    wrong.set_data_from_numpy(np.zeros((1, 64), np.int32))
    cases.append((lambda: client.infer("digits", [wrong]), "StatusCode.INVALID_ARGUMENT",
                  "must be FP32, got INT32"))
    short = tg.InferInput("X", [1, 63], "FP32")
    short.set_data_from_numpy(np.zeros((1, 63), np.float32))
    cases.append((lambda: client.infer("digits", [short]), "StatusCode.INVALID_ARGUMENT",
                  "must have shape [-1, 64]"))
    cases.append((lambda: client.infer("digits", [_input(x)],
                                       outputs=[tg.InferRequestedOutput("logits")]),
                  "StatusCode.INVALID_ARGUMENT", "unknown ['logits']"))
    for call, code, message in cases:
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == code and message in err.value.message()
    client.close()


def test_triton_extensions_over_grpc(serve_reg: Registry, digits: Digits,
                                     start_gateway: Start) -> None:
    _, client = _start(start_gateway, serve_reg)
    cfg = client.get_model_config("digits", as_json=True)["config"]
    assert cfg["name"] == "digits" and cfg["platform"] == "onnxruntime_onnx"
    assert cfg["input"] == [{"name": "X", "data_type": "TYPE_FP32", "dims": ["-1", "64"]}]
    assert {o["name"]: o["data_type"] for o in cfg["output"]} == {
        "label": "TYPE_INT64", "probabilities": "TYPE_FP32"}
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [{"name": "digits", "version": "1", "state": "READY"}]
    for _ in range(3):
        client.infer("digits", [_input(digits.x[:5])])
    stats = client.get_inference_statistics("digits", as_json=True)["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("digits", "1")]
    s = stats[0]
    assert s["inference_count"] == "15" and s["execution_count"] == "3"
    assert s["inference_stats"]["success"]["count"] == "3"
    assert int(s["inference_stats"]["success"]["ns"]) > 0
    assert int(s["last_inference"]) > 0
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert [x["name"] for x in every] == ["digits"]
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_config("nope")
    with pytest.raises(InferenceServerException) as err:  # refused, as docs/serving.md says
        client.load_model("digits")
    assert err.value.status() == "StatusCode.UNIMPLEMENTED"
    client.close()


def test_canary_shadow_and_metrics_over_grpc(serve_reg: Registry, digits: Digits,
                                             tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.good, "v3")
    serve_reg.promote("digits@v2", "canary", reason="try", create=True)
    serve_reg.promote("digits@v3", "staging", reason="shadow it", create=True)
    srv, client = _start(start_gateway, serve_reg, [
        {"model": "digits", "canary": {"ref": "canary", "percent": 30, "auto": False},
         "shadow": "staging"}])
    wait_for(serving(srv.url, 3, "shadow"), "the shadow to load")
    seen: dict[str, set[str]] = {}
    for user in range(100):
        for _ in range(2):  # the key travels as gRPC metadata, like the REST header
            r = client.infer("digits", [_input(digits.x[:1])],
                             headers={"x-request-key": f"user-{user}"})
            seen.setdefault(f"user-{user}", set()).add(r.get_response().model_version)
    assert all(len(v) == 1 for v in seen.values())  # sticky per caller
    share = sum(v == {"2"} for v in seen.values()) / len(seen)
    assert 0.1 < share < 0.5, share
    # as a parameter too
    r = client.infer("digits", [_input(digits.x[:1])], parameters={"request_key": "user-7"})
    assert {r.get_response().model_version} == seen["user-7"]
    wait_for(lambda: status(srv.url)["shadow"]["compared"] >= 150, "shadow comparisons")
    reg = srv.gateway.metrics.registry
    answered = sum(reg.get_sample_value("modelvc_requests_total",
                                        {"model": "digits", "version": v, "channel": c}) or 0
                   for v, c in (("v1", "production"), ("v2", "canary")))
    assert answered == 201
    assert reg.get_sample_value("modelvc_shadow_requests_total",
                                {"model": "digits", "version": "v3"}) >= 150
    # a refused request is counted per model and version
    wrong = tg.InferInput("X", [1, 64], "INT32")
    wrong.set_data_from_numpy(np.zeros((1, 64), np.int32))
    with pytest.raises(InferenceServerException):
        client.infer("digits", [wrong], model_version="1")
    assert reg.get_sample_value("modelvc_errors_total", {
        "model": "digits", "version": "v1", "channel": "v1", "kind": "bad_request"}) == 1
    client.close()


def test_hot_swaps_under_grpc_load_fail_no_request(serve_reg: Registry, digits: Digits,
                                                   tmp_path: Path,
                                                   start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    srv, _ = _start(start_gateway, serve_reg)
    port = srv.gateway.cfg.grpc_port

    def connect() -> Client:
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")

        def ask(x: np.ndarray) -> tuple[str | None, Any]:
            r = client.infer("digits", [_input(x)])
            if r.as_numpy("label").shape != (8,):
                return None, r.get_response(as_json=True)
            return r.get_response().model_version, None
        return ask, client.close

    # 21 swaps, each a load (one previous stays warm); any failed call is a failure
    tally = swap_under_load(serve_reg, srv.url, digits.x, [2, 3, 1] * 7, connect,
                            (InferenceServerException,))
    assert tally.failures == []
    assert tally.seen == {"1", "2", "3"} and tally.answered > 100


def test_every_other_tritonclient_grpc_call_is_refused_or_works(
        serve_reg: Registry, digits: Digits, start_gateway: Start) -> None:
    """The RPCs docs/serving.md marks refused answer UNIMPLEMENTED (tritonclient raises
    or calls back with it); async_infer works."""
    import queue

    _, client = _start(start_gateway, serve_reg)
    for call in triton_refused_calls(client):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.UNIMPLEMENTED"
    got: queue.Queue[Any] = queue.Queue()
    client.async_infer("digits", [_input(digits.x[:4])],
                       callback=lambda result, error: got.put((result, error)))
    result, error = got.get(timeout=60)
    assert error is None and result.as_numpy("label").shape == (4,)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    with contextlib.suppress(InferenceServerException):  # the stream may be refused first
        client.async_stream_infer("digits", [_input(digits.x[:4])])
    result, error = got.get(timeout=60)
    assert result is None and "UNIMPLEMENTED" in str(error.status())
    client.stop_stream()
    client.close()
