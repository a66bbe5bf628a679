"""Canary traffic (sticky per caller), the policy's automatic promotion and rollback,
feedback and live accuracy, and shadow comparison."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.registry import Registry

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, serving, status, wait_for
from .predictors import POISONED

# Latency is judged in bench/ (a loaded machine would fail it), not here.
FAST = {"min_samples": 40, "min_feedback": 40, "window": 120.0, "check_latency": False}


def _canary(percent: float, auto: bool = True, **policy: Any) -> dict[str, Any]:
    return {"model": "digits", "canary": {"ref": "canary", "percent": percent, "auto": auto,
                                          "policy": FAST | policy}}


def _drive(url: str, digits: Digits, until: Any, *, callers: int = 3) -> dict[str, int]:
    """Send labelled traffic (each caller its own keys) with feedback until `until()`."""
    stop = threading.Event()
    versions: dict[str, int] = {}
    failures: list[Any] = []

    def run(c: int) -> None:
        caller = Caller(url)
        i = 0
        while not stop.is_set():
            k = (c * 7919 + i) % len(digits.x)
            caller.headers["X-Request-Key"] = f"user-{c}-{i}"
            code, doc, _ = caller.infer(digits.x[k:k + 1], req_id=f"{c}-{i}")
            if code != 200:
                failures.append(doc)
                continue
            versions[doc["model_version"]] = versions.get(doc["model_version"], 0) + 1
            assert caller.feedback(f"{c}-{i}", int(digits.y[k]))[0] == 200
            i += 1
        caller.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    try:
        wait_for(until, "the canary decision", limit=60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    return versions


def test_canary_routing_is_sticky_per_caller(serve_reg: Registry, digits: Digits,
                                             tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    serve_reg.promote("digits@v2", "canary", reason="try", create=True)
    srv = start_gateway(serve_reg, [_canary(30, auto=False)])
    seen: dict[str, set[str]] = {}
    for user in range(150):
        caller = Caller(srv.url, key=f"user-{user}")
        for _ in range(3):
            code, doc, _ = caller.infer(digits.x[:1])
            assert code == 200
            seen.setdefault(f"user-{user}", set()).add(doc["model_version"])
        caller.close()
    assert all(len(v) == 1 for v in seen.values())  # every caller stays on one side
    share = sum(v == {"2"} for v in seen.values()) / len(seen)
    assert 0.15 < share < 0.45, share


def test_regressing_canary_is_rolled_back_by_itself(serve_reg: Registry, digits: Digits,
                                                    tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.broken, "v2")
    serve_reg.promote("digits@v1", "canary", reason="start equal", create=True)
    serve_reg.promote("digits@v2", "canary", reason="try the new one")
    srv = start_gateway(serve_reg, [_canary(50)])
    served = _drive(srv.url, digits, serving(srv.url, 1, "canary"))
    assert served.get("2", 0) > 0  # it did take traffic before it was caught
    last = serve_reg.history("digits", "canary")[-1]
    assert last.action == "rollback" and last.actor == "modelvc-serve"
    assert last.reason.startswith("canary policy:")
    assert any(w in last.reason for w in ("drift", "accuracy", "error rate"))
    assert serve_reg.resolve("digits@canary").number == 1
    assert serve_reg.resolve("digits@production").number == 1
    assert srv.gateway.metrics.registry.get_sample_value(
        "modelvc_rollbacks_total", {"model": "digits", "channel": "canary"}) == 1.0
    # After the rollback every request is served by stable.
    assert {Caller(srv.url, key=f"k{i}").infer(digits.x[:1])[1]["model_version"]
            for i in range(20)} == {"1"}


def test_healthy_canary_is_promoted(serve_reg: Registry, digits: Digits, tmp_path: Path,
                                    start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    serve_reg.promote("digits@v2", "canary", reason="try", create=True)
    srv = start_gateway(serve_reg, [_canary(50)])
    _drive(srv.url, digits, serving(srv.url, 2))
    last = serve_reg.history("digits", "production")[-1]
    assert (last.action, last.actor) == ("promote", "modelvc-serve")
    assert "canary held" in last.reason and "accuracy" in last.reason
    assert serve_reg.resolve("digits@production").number == 2
    acc = srv.gateway.metrics.registry.get_sample_value(
        "modelvc_live_accuracy", {"model": "digits", "version": "v2"})
    assert acc is not None and acc > 0.85


PREDICTOR = b'''
import numpy as np

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        if self.calls > 1:  # the warm-up passes, traffic fails
            raise ValueError("feature store unreachable")
        return {"label": np.zeros(len(inputs["X"]), np.int64)}
'''


def test_failing_canary_costs_callers_nothing_and_is_rolled_back(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": PREDICTOR})
    serve_reg.promote("digits@v1", "canary", reason="start equal", create=True)
    serve_reg.promote("digits@v2", "canary", reason="python predictor")
    srv = start_gateway(serve_reg, [_canary(50, check_accuracy=False)], trust="any")
    served = _drive(srv.url, digits, serving(srv.url, 1, "canary"))
    assert set(served) == {"1"}  # canary failures were answered by stable
    assert "error rate" in serve_reg.history("digits", "canary")[-1].reason
    assert (srv.gateway.metrics.registry.get_sample_value(
        "modelvc_errors_total", {"model": "digits", "version": "v2", "channel": "canary",
                                 "kind": "model"}) or 0) >= 1


def test_requests_every_version_fails_do_not_roll_a_healthy_canary_back(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    """A request stable fails too is the client's fault: the canary is not charged for
    it (a few bad requests rolled a healthy canary back on its error rate)."""
    stable = commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": POISONED})
    canary = commit_onnx(serve_reg, tmp_path, b"", "v3",
                         extra={"predictor.py": POISONED + b"# the same, re-exported\n"})
    serve_reg.promote(f"digits@v{stable}", "production", reason="python predictor")
    serve_reg.promote(f"digits@v{stable}", "canary", reason="start equal", create=True)
    serve_reg.promote(f"digits@v{canary}", "canary", reason="candidate")
    srv = start_gateway(serve_reg, [_canary(50, check_accuracy=False)], trust="any")
    caller = Caller(srv.url)
    bad = digits.x[:1].copy()
    bad[0, 0] = -1e9
    sent = 0
    while serve_reg.resolve("digits@production").number != canary:
        assert sent < 4000, f"no verdict: {status(srv.url)}"
        caller.headers["X-Request-Key"] = f"user-{sent}"
        code, _, _ = caller.infer(bad if sent % 4 == 0 else digits.x[sent % 50:sent % 50 + 1])
        assert code == (500 if sent % 4 == 0 else 200)
        sent += 1
        last = serve_reg.history("digits", "canary")[-1]
        assert last.action != "rollback", last.reason  # never charged for the bad ones
    caller.close()


def test_a_model_failing_on_an_input_is_one_log_line_and_a_plain_message(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start,
        caplog: pytest.LogCaptureFixture) -> None:
    """A traceback per failed request buried the log, and clients read internal class
    names (RuntimeError_: ...)."""
    caplog.set_level("WARNING", logger="modelvc.serving")
    v = commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": POISONED})
    serve_reg.promote(f"digits@v{v}", "production", reason="python predictor")
    srv = start_gateway(serve_reg, [{"model": "digits"}], trust="any")
    bad = digits.x[:1].copy()
    bad[0, 0] = -1e9
    code, doc, _ = Caller(srv.url).infer(bad)
    assert code == 500 and doc["error"].startswith("the model failed on this request: ")
    assert "poisoned input" in doc["error"] and "RuntimeError_" not in doc["error"]
    failed = [r for r in caplog.records if "the model failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelname == "WARNING" and not failed[0].exc_info


def test_an_empty_batch_is_a_bad_request(serve_reg: Registry, digits: Digits,
                                         start_gateway: Start) -> None:
    srv = start_gateway(serve_reg, [{"model": "digits"}])
    code, doc, _ = Caller(srv.url).infer(digits.x[:0])
    assert code == 400 and "is empty (shape [0, 64])" in doc["error"], doc


def test_trust_policy_refuses_python_predictor(serve_reg: Registry, tmp_path: Path,
                                               start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": PREDICTOR})
    serve_reg.promote("digits@v2", "staging", reason="python predictor", create=True)
    srv = start_gateway(serve_reg, [{"model": "digits", "shadow": "staging"}])
    err = status(srv.url)["shadow"]["error"]
    assert "trust policy ('never') refuses" in err


def test_shadow_compares_without_answering(serve_reg: Registry, digits: Digits,
                                           tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    serve_reg.promote("digits@v2", "staging", reason="shadow it", create=True)
    srv = start_gateway(serve_reg, [{"model": "digits", "shadow": "staging"}])
    caller = Caller(srv.url)

    def mirror(n: int) -> float:
        """Send requests until the shadow compared N (a busy gateway drops mirrors past
        its backlog, by design: never the answered request); its agreement then."""
        sent = 0
        while status(srv.url)["shadow"]["compared"] < n:
            assert sent < 50 * n, f"the shadow compared too few of {sent} requests"
            for i in range(sent % 60, sent % 60 + 20):
                assert caller.infer(digits.x[i:i + 4])[1]["model_version"] == "1"
            sent += 20
            wait_for(lambda: status(srv.url)["shadow"]["pending"] == 0, "mirrors in flight")
        return float(status(srv.url)["shadow"]["agreement"])

    assert 0.8 < mirror(60) <= 1.0
    serve_reg.promote("digits@v3", "staging", reason="shadow a broken one")
    wait_for(serving(srv.url, 3, "shadow"), "the shadow switch")
    assert mirror(60) < 0.5


def test_feedback_errors_are_clear(serve_reg: Registry, digits: Digits,
                                   start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)
    caller = Caller(srv.url)
    first = np.array(caller.infer(digits.x[:3], req_id="batch-1")[1]["outputs"][0]["data"])
    assert caller.feedback("nope", 1)[0] == 404
    code, doc = caller.feedback("batch-1", [1])
    assert code == 400 and "predicted 3 labels; feedback has 1" in doc["error"]
    code, doc = caller.feedback("batch-1", "seven")  # type: ignore[arg-type]
    assert code == 400 and "integer" in doc["error"]
    code, doc = caller.feedback("batch-1", [int(v) for v in digits.y[:3]])
    assert code == 200 and doc["total"] == 3 and doc["version"] == 1
    # once per answer: a repeat (a retried POST, a reused id) would count it twice
    code, doc = caller.feedback("batch-1", [int(v) for v in digits.y[:3]])
    assert code == 409 and "already recorded" in doc["error"], doc
    sample = srv.gateway.metrics.registry.get_sample_value
    right = sample("modelvc_feedback_total", {"model": "digits", "version": "v1",
                                              "correct": "true"})
    wrong = sample("modelvc_feedback_total", {"model": "digits", "version": "v1",
                                              "correct": "false"})
    assert (right, wrong) == (float(np.sum(first == digits.y[:3])),
                              float(np.sum(first != digits.y[:3])))
