"""Faults: the database restarts mid-rollout (a private PostgreSQL this test may stop), a
replica comes back late, a replica that cannot stage backs off instead of retrying on
every look."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelvc.api import Deployment, Replica
from modelvc.fleet.controller import Controller
from modelvc.meta.rows import now
from modelvc.registry import Registry
from tests.services.ports import free_port
from tests.serving.conftest import Digits, commit_onnx

from .conftest import make_registry
from .fleet_helpers import GatewayProcess, Load, wait_for
from .private_pg import PrivatePostgres
from .test_stage_failures import PREDICTOR, served

Starter = Callable[..., list[GatewayProcess]]


@pytest.fixture
def private_reg(tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[tuple[Registry, PrivatePostgres]]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    pg = PrivatePostgres()
    try:
        reg = make_registry(tmp_path / "repo", pg.url(), digits)
        yield reg, pg
        reg.close()
    finally:
        pg.close()


def test_database_restart_between_stage_and_flip(
        private_reg: tuple[Registry, PrivatePostgres], start_gateways: Starter,
        digits: Digits) -> None:
    reg, pg = private_reg
    gws = start_gateways(reg, 3)
    v2 = reg.resolve("digits@v2").id
    with Controller(reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        with Load([g.url for g in gws], digits.x) as load:
            wait_for(lambda: load.seen.ok > 50, "traffic")
            staged = c.stage(c.rollouts.get_deployment("d"), v2)
            assert isinstance(staged, Deployment), staged
            pg.stop()
            seen = load.seen.ok
            wait_for(lambda: load.seen.ok > seen + 100, "traffic while the database is down")
            pg.start()
            back = now()
            # Every gateway reconnects, re-reads the deployment (still staging v2 at
            # epoch 2) and reports again, keeping what it staged.
            wait_for(lambda: all(r.heartbeat_at is not None and r.heartbeat_at > back
                                 and r.staged_id == v2 for r in c.rollouts.list_replicas()),
                     "every replica to report again, still staged")
            out = c.flip(staged, lambda: reg.promote("digits@v2", "production"))
            assert out.ok, out.reason
            seen = load.seen.ok
            wait_for(lambda: load.seen.ok > seen + 100, "traffic after the flip")
        assert load.seen.failed == [] and load.seen.backwards == []
        assert served(gws) == {(2, 2)}
        # ... and once more the other way: a restart right after the commit point.
        d = c.rollouts.get_deployment("d")
        staged = c.stage(d, reg.resolve("digits@v1").id)
        assert isinstance(staged, Deployment)
        c.rollouts.commit_flip(staged.name, staged.epoch, "racer")
        pg.stop()
        pg.start()
        wait_for(lambda: served(gws) == {(1, 3)}, "the fleet on v1 after the restart")


def test_a_replica_back_late_converges(fleet_reg: Registry, start_gateways: Starter,
                                       tmp_path: Path) -> None:
    gws = start_gateways(fleet_reg, 3)
    with Controller(fleet_reg, stale=4.0) as c:  # 20 missed reports: margin at load 18
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        gws[2].stop()
        d = c.rollouts.get_deployment("d")
        wait_for(lambda: len(c.members(d)) == 2, "r3 to drop out of the live members")
        out = c.rollout("d", "v2")
        assert out.ok, out.reason
        assert served(gws[:2]) == {(2, 2)}
        assert {r["id"]: r["why"] for r in c.status("d")["replicas"]}["r3"].startswith(
            "silent")
        late = GatewayProcess(fleet_reg._layout.root.parent, "r3", free_port(),
                              log=tmp_path / "r3-late.log")
        try:
            wait_for(late.ready, "r3 to come back")
            # Ready only once it serves the fleet's version (never its old v1 first).
            assert (late.status()["version"], late.status()["epoch"]) == (2, 2)
            wait_for(lambda: all(r["why"] == "in sync" for r in c.status("d")["replicas"]),
                     "r3 to report in sync")
        finally:
            late.stop()


def _attempts(error: str | None) -> int:
    m = re.search(r"\(attempt (\d+),", error or "")
    return int(m.group(1)) if m else 0


def test_a_replica_that_cannot_stage_backs_off(fleet_reg: Registry, start_gateways: Starter,
                                               tmp_path: Path) -> None:
    """The controller dies after beginning a stage that r3 cannot load (its trust policy
    refuses Python predictors): r3 retries after 1, 2, 4 ... s, not on every look."""
    gws = start_gateways(fleet_reg, 2, trust="any") + start_gateways(fleet_reg, 1)
    commit_onnx(fleet_reg, tmp_path, b"", "v4-python",
                extra={"predictor.py": PREDICTOR, "load_seconds": b"0"})
    v4 = fleet_reg.resolve("digits@v4").id
    meta = fleet_reg._meta
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        d = meta.begin_stage("d", 1, v4, ["r1", "r2", "r3"])  # and no controller after
        beats: set[object] = set()

        def r3() -> Replica:
            (row,) = [r for r in meta.list_replicas("digits") if r.id == "r3"]
            if row.state == "failed":
                beats.add(row.heartbeat_at)
            return row

        wait_for(lambda: r3() is not None and len(beats) >= 10,
                 "ten heartbeats of r3 after its failure")
        # ~2 s of heartbeats every 0.2 s and looks as often: at most the first retries
        row = r3()
        assert 1 <= _attempts(row.error) <= 3, row.error
        assert "trust policy" in (row.error or "")
        # Aborting puts everyone back on v1; a new attempt is tried at once, not after
        # the backoff of the old one.
        meta.abort_stage("d", d.epoch, "controller gone")
        wait_for(lambda: served(gws) == {(1, 3)}, "every replica on v1 past the abort")
        out = c.rollout("d", "v4")
        assert not out.ok and "replica r3 failed" in out.reason
        assert "(attempt 1," in out.reason
