"""Atomic rollouts over gateway processes on one machine (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

from collections.abc import Callable

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from tests.serving.conftest import Digits

from .fleet_helpers import GatewayProcess, Load, wait_for

Starter = Callable[..., list[GatewayProcess]]


def versions(gws: list[GatewayProcess]) -> list[tuple[int, int]]:
    return [(s["version"], s["epoch"]) for s in (g.status() for g in gws)]


def test_atomic_rollout_under_load_and_one_step_rollback(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(fleet_reg, 3)
    with Controller(fleet_reg, stage_timeout=60) as c:
        c.create("digits-prod", "digits", "production", selector={"app": "digits"})
        first = c.rollout("digits-prod")  # adopt v1 at epoch 1
        assert first.ok, first.reason
        assert versions(gws) == [(1, 1)] * 3
        with Load([g.url for g in gws], digits.x) as load:
            wait_for(lambda: load.seen.ok > 50, "traffic")
            out = c.rollout("digits-prod", "v2")
            assert out.ok, out.reason
            wait_for(lambda: "2" in load.seen.versions and load.seen.ok > 200, "v2 traffic")
            back = c.rollback("digits-prod")
            assert back.ok, back.reason
            served = load.seen.ok
            wait_for(lambda: load.seen.ok > served + 100, "traffic after the rollback")
        assert load.seen.failed == []
        assert load.seen.backwards == []
        assert versions(gws) == [(1, 3)] * 3
        st = c.status("digits-prod")
        assert (st["version"], st["previous"], st["epoch"], st["state"]) == (1, 2, 3, "done")
        assert {r["why"] for r in st["replicas"]} == {"in sync"}
        assert all(r["warm"] == 2 for r in st["replicas"])  # v2 still warm: forward is one step
    assert fleet_reg.ref("digits", "production").version_id == \
        fleet_reg.resolve("digits@v1").id
    # every flip is in the audit trail: what the fleet served, from which epoch
    ids = {v.id: v.number for v in fleet_reg.versions("digits")}
    flips = [(ids.get(e.before["version"]), ids[e.after["version"]], e.after["epoch"])
             for e in fleet_reg.audit(model="digits", action="deploy-flip")]
    assert flips == [(None, 1, 1), (1, 2, 2), (2, 1, 3)]
    assert fleet_reg.audit(model="digits", action="deploy-create")[-1].actor == c.actor
