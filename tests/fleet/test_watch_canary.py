"""`modelvc deploy watch` takes the strategy and canary options of `deploy rollout`: an
atomic deployment watched with `--strategy canary --canary-replicas 2 --no-accuracy`
judges every channel move on two canary replicas first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from tests.services.clirun import run
from tests.serving.conftest import Digits, commit_onnx
from tests.serving.predictors import CONSTANT

from .fleet_helpers import GatewayProcess, WatchProcess, wait_for
from .test_atomic import versions
from .test_canary_trials import _loads

Starter = Callable[..., list[GatewayProcess]]


def test_watch_with_canary_options(fleet_reg: Registry, start_gateways: Starter,
                                   digits: Digits, tmp_path: Path) -> None:
    commit_onnx(fleet_reg, tmp_path, b"", "v4", extra={"predictor.py": CONSTANT})
    gws = start_gateways(fleet_reg, 3, trust="any")
    root = fleet_reg._layout.root.parent
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")  # stored strategy: atomic
        assert c.rollout("d").ok  # v1 at epoch 1
    # A rolling rollout cannot stand in for an atomic deployment's: refused at start.
    bad = run(["--registry", str(root), "deploy", "watch", "d", "--strategy", "rolling"])
    assert bad.returncode == 2 and "rolling is chosen at `deploy create`" in bad.stderr, \
        bad.stderr
    # No feedback comes back: without --no-accuracy no canary could earn a verdict.
    w = WatchProcess(root, "d", "--strategy", "canary", "--canary-replicas", "2",
                     "--no-accuracy", "--no-latency", "--min-samples", "40",
                     "--canary-window", "45",
                     log=tmp_path / "watch.log")
    loads = _loads(gws, digits)
    try:
        # v4 answers 0 to everything: output drift on r1 and r2 rolls it back.
        fleet_reg.promote("digits@v4", "production", reason="try v4")
        (bad_out,) = w.wait_lines(1, "the verdict on v4")
        assert not bad_out["ok"], bad_out
        assert bad_out["reason"].startswith("canary on r1, r2 rolled back: output drift"), \
            bad_out
        assert bad_out["reason"].endswith("production moved back to v1"), bad_out
        wait_for(lambda: versions(gws) == [(1, 3)] * 3, "every replica back on v1")
        # v2 holds on both canaries, then the third replica flips at their epoch.
        fleet_reg.promote("digits@v2", "production", reason="try v2")
        lines = w.wait_lines(2, "the verdict on v2")
        assert lines[1]["ok"], lines[1]
        assert lines[1]["reason"].startswith("canary on r1, r2: canary held over"), lines[1]
        assert "drift" in lines[1]["reason"] and "accuracy" not in lines[1]["reason"]
        assert versions(gws) == [(2, 4)] * 3
    finally:
        tallies = [t.stop() for t in loads]
        w.stop()
    assert sum(t.failed for t in tallies) == 0
    assert c.rollouts.get_deployment("d").strategy == "atomic"  # the override is not stored
