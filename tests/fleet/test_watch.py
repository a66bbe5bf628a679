"""`modelvc deploy watch`: plain `modelvc promote` / `modelvc rollback` of the channel drive
the fleet (PostgreSQL NOTIFY on ref moves); a refused version is not retried until the
channel moves again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelvc.fleet.controller import Controller, Outcome
from modelvc.fleet.watch import Watcher
from modelvc.registry import Registry
from tests.services.clirun import run
from tests.serving.conftest import Digits, commit_onnx

from .fleet_helpers import GatewayProcess, Load, wait_for
from .test_stage_failures import PREDICTOR, served

Starter = Callable[..., list[GatewayProcess]]


def cli(reg: Registry, *args: str) -> None:
    """`modelvc ARGS` in this process (tests/services/clirun.py): a channel move as the
    command makes it; the watcher learns of it from the database, not the process."""
    p = run(["--registry", str(reg._layout.root.parent), *args])
    assert p.returncode == 0, p.stdout + p.stderr


def test_channel_moves_drive_the_fleet(fleet_reg: Registry, start_gateways: Starter,
                                       digits: Digits, tmp_path: Path) -> None:
    # r3 refuses Python predictors (trust never): v4 stages on r1, r2 only.
    gws = start_gateways(fleet_reg, 2, trust="any") + start_gateways(fleet_reg, 1)
    commit_onnx(fleet_reg, tmp_path, b"", "v4-python",
                extra={"predictor.py": PREDICTOR, "load_seconds": b"0"})
    outcomes: list[Outcome] = []
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production", selector={"app": "digits"})
        w = Watcher(c, "d", safety=0.2, on_outcome=outcomes.append)
        thread = w.start()
        try:
            wait_for(lambda: len(outcomes) == 1, "the watcher to adopt the channel")
            assert outcomes[0].ok and served(gws) == {(1, 1)}
            with Load([g.url for g in gws], digits.x) as load:
                wait_for(lambda: load.seen.ok > 50, "traffic")
                cli(fleet_reg, "promote", "digits@v2", "--to", "production")
                wait_for(lambda: len(outcomes) == 2, "the rollout the promote drives")
                wait_for(lambda: "2" in load.seen.versions and load.seen.ok > 200,
                         "v2 traffic")
                cli(fleet_reg, "rollback", "digits", "production")
                wait_for(lambda: len(outcomes) == 3, "the rollout the rollback drives")
                seen = load.seen.ok
                wait_for(lambda: load.seen.ok > seen + 100, "traffic after the rollback")
            assert [o.ok for o in outcomes] == [True] * 3, [o.reason for o in outcomes]
            assert load.seen.failed == [] and load.seen.backwards == []
            assert served(gws) == {(1, 3)}
            st = c.status("d")
            assert (st["version"], st["previous"], st["state"]) == (1, 2, "done")

            # The fleet refuses v4: aborted once, then left alone while other refs move.
            cli(fleet_reg, "promote", "digits@v4", "--to", "production")
            wait_for(lambda: len(outcomes) == 4, "the refused rollout")
            assert not outcomes[3].ok and "replica r3 failed" in outcomes[3].reason
            epoch = c.rollouts.get_deployment("d").epoch
            looks = w.looks
            fleet_reg.promote("digits@v2", "staging", reason="wakes the watcher", create=True)
            wait_for(lambda: w.looks >= looks + 3, "the watcher to look again")
            assert len(outcomes) == 4 and c.rollouts.get_deployment("d").epoch == epoch
            assert served(gws) == {(1, epoch)}
            # The channel moves again: the watcher follows it.
            cli(fleet_reg, "promote", "digits@v2", "--to", "production")
            wait_for(lambda: len(outcomes) == 5, "the rollout after the channel moved")
            assert outcomes[4].ok and served(gws) == {(2, epoch + 1)}
        finally:
            w.stop()
            thread.join(30)
