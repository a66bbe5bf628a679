"""`modelvc deploy watch` remembers refusals across restarts: the controller records
every refused switch in the audit trail, so a watcher process killed after the fleet
refused a version, and started again, leaves that version alone until the channel moves
again (and then follows it, or tries it again if it is re-promoted)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from tests.services.clirun import run
from tests.serving.conftest import commit_onnx

from .fleet_helpers import GatewayProcess, WatchProcess, wait_for
from .test_stage_failures import PREDICTOR, served

Starter = Callable[..., list[GatewayProcess]]


def cli(reg: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    """`modelvc ARGS` in this process (tests/services/clirun.py): what the command says
    and does (the watchers are the processes here)."""
    p = run(["--registry", str(reg._layout.root.parent), *args])
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def looks(w: WatchProcess) -> int:
    """Looks the watcher has completed (its --log-level debug lines)."""
    return w.log.read_text().count(": look ")


def test_a_restarted_watcher_skips_the_version_the_fleet_refused(
        fleet_reg: Registry, start_gateways: Starter, tmp_path: Path) -> None:
    # r2 refuses Python predictors (trust never): the fleet refuses v4.
    gws = start_gateways(fleet_reg, 1, trust="any") + start_gateways(fleet_reg, 1)
    commit_onnx(fleet_reg, tmp_path, b"", "v4-python",
                extra={"predictor.py": PREDICTOR, "load_seconds": b"0"})
    v4 = fleet_reg.resolve("digits@v4").id
    root = fleet_reg._layout.root.parent
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production", selector={"app": "digits"})
        assert c.rollout("d").ok  # v1 at epoch 1
    first = WatchProcess(root, "d", log=tmp_path / "watch-1.log")
    second: WatchProcess | None = None
    try:
        cli(fleet_reg, "promote", "digits@v4", "--to", "production")
        revision = fleet_reg.ref("digits", "production").revision
        (out,) = first.wait_lines(1, "the first watcher's refused rollout")
        assert not out["ok"] and "replica r2 failed" in out["reason"], out
        assert (out["state"], out["epoch"]) == ("aborted", 3)
        (entry,) = fleet_reg.audit(action="deploy-refuse")
        assert (entry.model, entry.target, entry.reason) == ("digits", "deployment:d",
                                                             out["reason"])
        assert entry.after["version"] == v4 and entry.after["channel_revision"] == revision
        assert entry.before["number"] == 1
        first.kill()  # a crash: nothing but the database remembers

        second = WatchProcess(root, "d", "--log-level", "debug", log=tmp_path / "watch-2.log")
        (skip,) = second.wait_lines(1, "the restarted watcher's first look")
        assert skip["skipped"] == 4 and skip["refused"]["channel_revision"] == revision
        assert skip["refused"]["reason"] == out["reason"]
        # Other refs move (NOTIFY wakes it) and time passes: v4 is still not tried.
        looked = looks(second)
        fleet_reg.promote("digits@v2", "staging", reason="wakes the watcher", create=True)
        # the look NOTIFY wakes, and the safety re-read after it
        wait_for(lambda: looks(second) >= looked + 2, "two more looks by the watcher")
        assert len(second.lines()) == 1
        d = fleet_reg.rollouts.get_deployment("d")
        assert (d.epoch, d.state, d.pending_id) == (3, "aborted", None)
        assert served(gws) == {(1, 3)}
        assert len(fleet_reg.audit(action="deploy-refuse")) == 1
        st = json.loads(cli(fleet_reg, "deploy", "status", "d", "--json").stdout)
        assert st["refused"]["version"] == 4 and st["refused"]["version_id"] == v4
        human = cli(fleet_reg, "deploy", "status", "d").stdout
        assert "production names v4, refused" in human, human

        # The channel moves: the restarted watcher follows it ...
        cli(fleet_reg, "promote", "digits@v2", "--to", "production")
        lines = second.wait_lines(2, "the rollout after the channel moved")
        assert lines[1]["ok"] and lines[1]["epoch"] == 4, lines
        assert served(gws) == {(2, 4)}
        st = json.loads(cli(fleet_reg, "deploy", "status", "d", "--json").stdout)
        assert st["refused"] is None  # the channel no longer names it
        # ... and re-promoting v4 is a deliberate retry (refused again, recorded again).
        cli(fleet_reg, "promote", "digits@v4", "--to", "production")
        lines = second.wait_lines(3, "the retry of v4")
        assert not lines[2]["ok"] and "replica r2 failed" in lines[2]["reason"]
        assert len(fleet_reg.audit(action="deploy-refuse")) == 2
    finally:
        first.kill()
        if second is not None:
            second.stop()
    assert second.proc.returncode == 130  # SIGINT: see test_watch_signals.py
    assert "stopped" in second.log.read_text()
