"""The fleet as separate hosts: one gateway per network namespace, reached over veth
pairs on a private /24; one host cut off (link down) mid-flip converges when it returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelvc.fleet.controller import Controller, Outcome
from modelvc.registry import Registry
from tests.serving.conftest import Digits

from .conftest import make_registry
from .fleet_helpers import GatewayProcess, Load, wait_for
from .netns import Host, Relay, hosts, netns_works

pytestmark = pytest.mark.skipif(netns_works() is not None,
                                reason=f"no network namespaces here: {netns_works()}")


@pytest.fixture
def fleet_hosts(tmp_path: Path, pg_url: str, digits: Digits, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[tuple[Registry, list[Host], list[GatewayProcess]]]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    u = sa.make_url(pg_url)
    gws: list[GatewayProcess] = []
    with hosts(3) as (bridge_ip, hs):
        relay = Relay(bridge_ip, u.host or "127.0.0.1", u.port or 5432)
        try:
            url = u.set(host=bridge_ip, port=relay.port).render_as_string(hide_password=False)
            reg = make_registry(tmp_path / "repo", url, digits)
            for i, h in enumerate(hs):
                gws.append(GatewayProcess(tmp_path / "repo", f"r{i + 1}", 8000, host=h.ip,
                                          netns=h.ns, log=tmp_path / f"r{i + 1}.log"))
            for g in gws:
                wait_for(g.ready, f"gateway {g.replica} in its namespace")
            yield reg, hs, gws
        finally:
            for h in hs:
                h.restore()
            for g in gws:
                g.stop()
            relay.close()


def served(gws: list[GatewayProcess]) -> set[tuple[int, int]]:
    return {(s["version"], s["epoch"]) for s in (g.status() for g in gws)}


def test_atomic_rollout_across_hosts_and_a_host_cut_off_mid_flip(
        fleet_hosts: tuple[Registry, list[Host], list[GatewayProcess]], digits: Digits) -> None:
    reg, hs, gws = fleet_hosts
    with Controller(reg, verify_timeout=2.0, stale=30.0) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        with Load([g.url for g in gws], digits.x) as load:
            wait_for(lambda: load.seen.ok > 50, "traffic")
            out = c.rollout("d", "v2")
            assert out.ok, out.reason
            wait_for(lambda: "2" in load.seen.versions and load.seen.ok > 200, "v2 traffic")
        assert load.seen.failed == [] and load.seen.backwards == []
        assert served(gws) == {(2, 2)}

        # Stage v3 everywhere, cut host 3 off, then flip: it misses the flip.
        staged = c.stage(c.rollouts.get_deployment("d"), reg.resolve("digits@v3").id)
        assert not isinstance(staged, Outcome), staged
        assert {r["staged"] for r in c.status("d")["replicas"]} == {3}
        hs[2].cut()
        out = c.flip(staged)
        assert not out.ok and out.deployment.state == "converging" and "r3" in out.reason
        assert served(gws[:2]) == {(3, 3)}
        hs[2].restore()
        wait_for(lambda: served(gws) == {(3, 3)}, "the cut-off host to converge", 60)
        wait_for(lambda: {r["why"] for r in c.status("d")["replicas"]} == {"in sync"},
                 "every replica to report in sync", 60)

        back = c.rollback("d")  # one step, to the still-warm v2
        assert back.ok, back.reason
        assert served(gws) == {(2, 4)}
