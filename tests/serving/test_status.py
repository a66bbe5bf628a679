"""Per-version window statistics: counted in time slots (bounded work and memory at any
request rate), predicted-label histograms (top labels plus "other") in /modelvc/status,
`?since=` for a trial's own requests, and the drift rule on them."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from modelvc.canary import (
    MAX_LABELS,
    OTHER,
    TOP_LABELS,
    Decision,
    Evidence,
    Policy,
    Window,
    comparable,
    decide,
)
from modelvc.registry import Registry

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, ManualClock, get_json, status, wait_for
from .predictors import CONSTANT


def test_window_counts_in_bounded_slots_whatever_the_rate() -> None:
    w = Window(span=60.0, slot=0.05)
    rng = np.random.default_rng(0)
    sent, t0 = 0, time.monotonic()
    while sent < 40_000:
        labels = rng.integers(0, 3 * MAX_LABELS, size=8)
        w.record(sent % 50 != 0, 0.002, labels)
        sent += 1
    elapsed = time.monotonic() - t0
    # One slot per 50 ms of traffic, not one entry per request.
    assert len(w.slots) <= elapsed / 0.05 + 2
    assert all(len(c.labels) <= MAX_LABELS for _, c in w.slots)
    ev = w.evidence()
    assert (ev.requests, ev.errors) == (sent, sent // 50)
    assert sum(ev.labels.values()) + ev.other == 8 * sent  # none lost, none counted twice
    s = ev.summary()
    assert len(s["labels"]) == TOP_LABELS + 1 and OTHER in s["labels"]
    assert sum(s["labels"].values()) == 8 * sent
    assert s["p95"] == pytest.approx(0.002, rel=0.03)  # from the latency histogram


def test_labels_of_any_numeric_output_are_counted_safely() -> None:
    w = Window(span=60.0)
    w.record(True, 0.001, np.array([2.0, np.nan, np.inf, 3.0]))
    w.record(True, 0.001, np.array([np.nan]))
    w.record(True, 0.001, np.array(["cat"]))
    w.record(True, 0.001, np.array([True]))
    assert w.evidence().labels == {2: 1, 3: 1, 1: 1} and w.evidence().requests == 4


def test_since_counts_only_later_slots_and_old_slots_expire() -> None:
    clock = ManualClock()
    w = Window(span=0.6, slot=0.05, clock=clock)
    for _ in range(10):
        w.record(False, 0.01, np.array([1]))
    clock.advance(0.01)
    mark = clock()
    clock.advance(0.06)  # the slot open at `mark` began before it: not counted
    for _ in range(5):
        w.record(True, 0.01, np.array([2, 2]))
    w.add_feedback(1, 2)
    after = w.evidence(since=mark)
    assert (after.requests, after.errors, after.labels) == (5, 0, {2: 10})
    assert (after.feedback, after.correct) == (2, 1)
    assert w.evidence().requests == 15
    clock.advance(0.52)
    assert w.evidence().requests == 15  # the first slot began 0.59 s ago: in the window
    clock.advance(0.02)
    assert w.evidence().requests == 5  # 0.61 s ago: out of it
    clock.advance(0.7)
    assert w.empty() and w.evidence().requests == 0 and w.total.labels == {}


def test_latency_rule_has_a_margin_and_can_be_off() -> None:
    pol = Policy(min_samples=20, check_accuracy=False, check_drift=False)
    stable = Evidence(requests=400, p95=0.010)
    # limit: 2 x stable p95 + 5 ms slack = 25 ms
    assert decide(pol, Evidence(requests=200, p95=0.024), stable).action == "promote"
    slow = Evidence(requests=200, p95=0.030)
    d = decide(pol, slow, stable)
    assert d == Decision("rollback", "latency p95 30.0 ms > 25.0 ms (stable 10.0 ms)")
    off = Policy(min_samples=20, check_accuracy=False, check_drift=False, check_latency=False)
    assert decide(off, slow, stable).action == "promote"


def test_accuracy_waits_for_a_stable_baseline() -> None:
    """A canary with enough labels is not promoted on its own accuracy while the stable
    side has too few to compare with (a share trial whose sides start together)."""
    pol = Policy(min_samples=20, min_feedback=40, check_drift=False)
    bad = Evidence(requests=100, feedback=50, correct=12)
    assert decide(pol, bad, Evidence(requests=100, feedback=30, correct=29)) == \
        Decision("wait", "30/40 stable feedback labels to compare with")
    d = decide(pol, bad, Evidence(requests=100, feedback=45, correct=44))
    assert d.action == "rollback" and d.reason.startswith("live accuracy 0.240 < stable")


def test_drift_rule_compares_only_labels_both_sides_itemize() -> None:
    pol = Policy(min_samples=20, check_accuracy=False)
    stable = Evidence(requests=400, labels={k: 40 for k in range(10)})
    same = Evidence(requests=200, labels={k: 20 for k in range(10)})
    collapsed = Evidence(requests=200, labels={0: 200})
    assert decide(pol, same, stable).action == "promote"
    # No baseline yet (e.g. a fleet trial's first moments): wait, do not skip the check.
    assert decide(pol, collapsed, Evidence(requests=5, labels={1: 5})) == \
        Decision("wait", "5/20 stable requests to compare with")
    d = decide(pol, collapsed, stable)
    assert d.action == "rollback" and d.reason.startswith("output drift 0.90")
    assert "0 100%" in d.reason  # says what the canary predicts
    # A side that lumps labels into "other" hides them: they are compared as "other".
    partial = Evidence(requests=400, labels={0: 40, 1: 40}, other=320)
    (c, cn), (s, sn) = comparable([[same], [partial]])
    assert (c, s) == ({0: 20, 1: 20, OTHER: 160}, {0: 40, 1: 40, OTHER: 320})
    assert (cn, sn) == (200, 400)
    assert decide(pol, same, partial).action == "promote"


def test_status_has_label_histograms_and_since(serve_reg: Registry, digits: Digits,
                                               start_gateway: Start) -> None:
    clock = ManualClock()
    srv = start_gateway(serve_reg, clock=clock)
    caller = Caller(srv.url)
    predicted: list[int] = []
    for i in range(30):
        doc = caller.infer(digits.x[i * 2:i * 2 + 2])[1]
        predicted += doc["outputs"][0]["data"]
    clock.advance(0.01)
    st = status(srv.url)
    (v1,) = st["versions"].values()
    win = v1["window"]
    want = {str(k): n for k, n in zip(*np.unique(predicted, return_counts=True), strict=True)}
    assert win["labels"] == want | {OTHER: 0}
    assert (win["requests"], win["errors"], v1["requests"]) == (30, 0, 30)
    assert st["slot"] == 0.5 and st["window"] == 60.0
    clock.advance(st["slot"])  # the next request opens a slot that begins after `clock`
    for i in range(7):
        caller.infer(digits.x[i:i + 1])
    later = get_json(f"{srv.url}/modelvc/status?since={st['clock']!r}")["digits"]
    (v1,) = later["versions"].values()
    assert v1["window"]["requests"] == 7 and v1["requests"] == 37
    assert sum(v1["window"]["labels"].values()) == 7
    with pytest.raises(urllib.error.HTTPError) as bad:
        get_json(f"{srv.url}/modelvc/status?since=yesterday")
    assert bad.value.code == 400


def test_gateway_canary_rolls_back_on_drift_alone(serve_reg: Registry, digits: Digits,
                                                  tmp_path: Path, start_gateway: Start) -> None:
    """No feedback comes back (accuracy unchecked): only the output drift of a canary
    that predicts one class catches it."""
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": CONSTANT})
    serve_reg.promote("digits@v1", "canary", reason="start equal", create=True)
    serve_reg.promote("digits@v2", "canary", reason="try")
    srv = start_gateway(serve_reg, [{"model": "digits", "canary": {
        "ref": "canary", "percent": 50,
        "policy": {"min_samples": 40, "window": 120.0, "check_accuracy": False,
                   "check_latency": False}}}],
        trust="any")
    caller = Caller(srv.url)
    i = 0

    def rolled_back() -> bool:
        nonlocal i
        caller.headers["X-Request-Key"] = f"user-{i}"
        assert caller.infer(digits.x[i % len(digits.x):][:1])[0] == 200
        i += 1
        return serve_reg.resolve("digits@canary").number == 1

    wait_for(rolled_back, "the drift rollback", limit=60)
    last = serve_reg.history("digits", "canary")[-1]
    assert last.action == "rollback" and "output drift" in last.reason, last.reason

