"""Fleet canary trials over gateway processes: output drift is judged from the gateways'
predicted-label histograms, a version tried again is judged only on its new requests,
and a canary replica that dies mid-trial fails the trial at the next look."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelvc.canary import Policy
from modelvc.fleet import trial as canary_trial
from modelvc.fleet.canary import GatewayStats
from modelvc.fleet.canary import read_stats as real_read_stats
from modelvc.fleet.controller import Controller, Outcome
from modelvc.registry import Registry
from modelvc.serving.loadgen import Traffic
from tests.serving.conftest import Digits, commit_onnx
from tests.serving.predictors import CONSTANT

from .fleet_helpers import GatewayProcess, get_json, wait_for
from .test_atomic import versions
from .test_canary import PAUSE, cli

Starter = Callable[..., list[GatewayProcess]]

# The MLP behind a feature store: every request fails while $DIGITS_OUTAGE names a file
# that exists (the warm-up passes, so the version loads).
OUTAGE = b'''
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        self.session = ort.InferenceSession(str(Path(folder) / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        flag = os.environ.get("DIGITS_OUTAGE", "")
        if self.calls > 1 and flag and os.path.exists(flag):
            raise ConnectionError("feature store unreachable")
        (label,) = self.session.run(["label"], {"X": inputs["X"]})
        return {"label": label.astype(np.int64)}
'''


def _loads(gws: list[GatewayProcess], digits: Digits, feedback: bool = False
           ) -> list[Traffic]:
    loads = [Traffic(g.url, "digits", digits.x, digits.y if feedback else None,
                     threads=2, pause=PAUSE).start() for g in gws]
    wait_for(lambda: all(t.tally.ok + t.tally.failed > 20 for t in loads), "traffic")
    return loads


def test_canary_whose_outputs_drift_is_rolled_back_without_feedback(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits, tmp_path: Path) -> None:
    """No labels come back (--no-accuracy): errors and latency are fine, only the
    predicted-label histograms show that the canary answers 0 to everything."""
    commit_onnx(fleet_reg, tmp_path, b"", "v4", extra={"predictor.py": CONSTANT})
    gws = start_gateways(fleet_reg, 3, trust="any")
    # Latency is not judged here: a Python predictor beside ONNX on a busy machine.
    opts = ["--no-accuracy", "--no-latency", "--min-samples", "40", "--json"]
    made = cli(fleet_reg, "create", "digits@production", "--name", "d", "--strategy",
               "canary", *opts)
    assert made.returncode == 0, made.stderr
    loads = _loads(gws, digits)
    try:
        out = cli(fleet_reg, "rollout", "d", "--to", "v4", *opts)
        canary = get_json(f"{gws[0].url}/modelvc/status")["digits"]["versions"]
        assert out.returncode == 5, out.stdout + out.stderr
        reason = json.loads(out.stdout)["reason"]
        assert reason.startswith("canary on r1 rolled back: output drift"), reason
        assert "(0 100% vs " in reason
        st = json.loads(cli(fleet_reg, "status", "d", "--json").stdout)
        assert (st["state"], st["version"], st["reason"]) == ("aborted", 1, reason)
        wait_for(lambda: versions(gws) == [(1, 3)] * 3, "every replica back on v1")
        # An operator who means the new answers says so: then it is not compared.
        out = cli(fleet_reg, "rollout", "d", "--to", "v4", "--no-drift", *opts)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "drift" not in json.loads(out.stdout)["reason"]
    finally:
        tallies = [t.stop() for t in loads]
    assert sum(t.failed for t in tallies) == 0
    v4 = canary[fleet_reg.resolve("digits@v4").id]["window"]
    assert v4["labels"]["0"] == v4["requests"] > 0 and v4["labels"]["other"] == 0
    assert versions(gws) == [(4, 4)] * 3


def test_a_version_tried_again_is_judged_on_its_new_requests(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first trial fails while a dependency is down; tried again seconds later (well
    within the gateways' 60 s window) it is judged only on the requests since."""
    outage = tmp_path / "outage"
    monkeypatch.setenv("DIGITS_OUTAGE", str(outage))
    commit_onnx(fleet_reg, tmp_path, digits.better, "v4", extra={"predictor.py": OUTAGE})
    gws = start_gateways(fleet_reg, 3, trust="any")
    policy = Policy(min_samples=40, min_feedback=40, check_latency=False)
    with Controller(fleet_reg, canary_replicas=1, policy=policy) as c:
        c.create("d", "digits", "production", strategy="canary")
        assert c.rollout("d").ok
        outage.touch()
        loads = _loads(gws, digits, feedback=True)
        try:
            first = c.rollout("d", "v4")
            assert not first.ok
            assert first.reason.startswith("canary on r1 rolled back: error rate"), first.reason
            wait_for(lambda: versions(gws) == [(1, 3)] * 3, "every replica back on v1")
            outage.unlink()
            t0 = time.monotonic()
            second = c.rollout("d", "v4")
        finally:
            for t in loads:
                t.stop()
        assert second.ok, second.reason
        assert time.monotonic() - t0 < 60  # the first trial's failures are still in window
        assert second.reason.startswith("canary on r1: canary held over"), second.reason
        assert "errors 0.0%" in second.reason and "drift" in second.reason
        assert versions(gws) == [(4, 4)] * 3
    assert fleet_reg.resolve("digits@production").number == 4


def test_a_canary_replica_dying_mid_trial_fails_it_at_once(
        fleet_reg: Registry, start_gateways: Starter, monkeypatch: pytest.MonkeyPatch) -> None:
    gws = start_gateways(fleet_reg, 3)
    # The trial is under way once the controller has read a gateway's statistics since
    # its mark (the reads before the trial, `_clocks`, pass no mark).
    judging = threading.Event()

    def read_stats(address: str, since: float | None = None, timeout: float = 2.0
                   ) -> GatewayStats | str:
        got = real_read_stats(address, since, timeout)
        if since is not None:
            judging.set()
        return got

    monkeypatch.setattr(canary_trial, "read_stats", read_stats)
    # No traffic: the trial would wait its whole 120 s window for a verdict.
    policy = Policy(min_samples=40, window=120.0)
    with Controller(fleet_reg, canary_replicas=1, policy=policy) as c:
        c.create("d", "digits", "production", strategy="canary")
        assert c.rollout("d").ok
        result: dict[str, Any] = {}
        trial = threading.Thread(target=lambda: result.update(out=c.rollout("d", "v2")))
        trial.start()
        wait_for(lambda: gws[0].status()["version"] == 2, "r1 to serve the canary")
        assert judging.wait(300), "the trial never read the gateways"  # a hang guard
        killed = time.monotonic()
        gws[0].kill()
        trial.join(300)  # a hang guard: the bound that matters is the one below
        out: Outcome = result["out"]
        assert not out.ok
        # Noticed at the next look (0.25 s), then the others go back (r1 is silent: the
        # switch back gives up on it after the controller's 5 s staleness): well before
        # the 120 s window ends, with room for a loaded machine.
        assert time.monotonic() - killed < 60
        why = out.deployment.reason or ""
        assert why.startswith("canary on r1 rolled back: canary replica r1 died mid-trial: "
                              f"{gws[0].url} does not answer"), why
        st = c.status("d")
        assert (st["state"], st["version"], st["epoch"], st["reason"]) == (
            "aborted", 1, 3, why)
        assert versions(gws[1:]) == [(1, 3)] * 2
