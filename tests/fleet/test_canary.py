"""The canary strategy over gateway processes under labelled load (with feedback): one
replica serves the new version first, the gateway canary policy judges it from the
gateways' per-version statistics, then the rest flip at one epoch, or every replica goes
back to the stable version and the deployment says why."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from modelvc.canary import Policy
from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from modelvc.serving.loadgen import Tally, Traffic
from tests.services.clirun import run
from tests.serving.conftest import Digits

from .fleet_helpers import GatewayProcess, wait_for
from .test_atomic import versions

Starter = Callable[..., list[GatewayProcess]]
# Latency is judged in bench/ (a loaded machine would fail it), not here.
FAST = Policy(min_samples=40, min_feedback=40, window=60.0, check_latency=False)
# Between one caller's requests: ~100 a second each is plenty for a verdict of 40
# samples, and leaves the CPUs to the gateways' and the controller's work (unpaced
# callers took a third of the module's CPU).
PAUSE = 0.01


@contextmanager
def traffic(gws: list[GatewayProcess], digits: Digits) -> Iterator[list[Traffic]]:
    """Callers that stay on one gateway each and send feedback for every answer."""
    loads = [Traffic(g.url, "digits", digits.x, digits.y, threads=2, pause=PAUSE).start()
             for g in gws]
    try:
        wait_for(lambda: all(t.tally.ok > 20 for t in loads), "traffic on every gateway")
        yield loads
    finally:
        tallies: list[Tally] = [t.stop() for t in loads]
        assert [t.errors[:3] for t in tallies if t.failed] == []


def cli(reg: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    """`modelvc deploy ARGS` in this process (tests/services/clirun.py): what the
    command says and does, not its process."""
    return run(["--registry", str(reg._layout.root.parent), "deploy", *args])


def test_healthy_canary_completes_to_the_whole_fleet(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(fleet_reg, 3)
    with Controller(fleet_reg, canary_replicas=1, policy=FAST) as c:
        c.create("d", "digits", "production", strategy="canary")
        assert c.rollout("d").ok  # adopts v1: nothing to compare with, not judged
        with traffic(gws, digits) as loads:
            out = c.rollout("d", "v2")
            assert out.ok, out.reason
            wait_for(lambda: all("2" in t.tally.by_version for t in loads), "v2 everywhere")
        assert out.reason.startswith("canary on r1: canary held over"), out.reason
        assert "accuracy" in out.reason
        assert versions(gws) == [(2, 2)] * 3  # the canary's epoch is the fleet's
        st = c.status("d")
        assert (st["state"], st["version"], st["previous"]) == ("done", 2, 1)
        assert {r["why"] for r in st["replicas"]} == {"in sync"}
    assert fleet_reg.ref("digits", "production").version_id == \
        fleet_reg.resolve("digits@v2").id


def test_regressing_canary_is_rolled_back_everywhere(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(fleet_reg, 3)
    policy = ["--min-samples", "40", "--min-feedback", "40", "--no-latency"]
    made = cli(fleet_reg, "create", "digits@production", "--name", "d", "--strategy",
               "canary", *policy)
    assert made.returncode == 0, made.stderr
    # The channel is moved first (as `deploy watch` sees it): v3 answers with shuffled
    # labels, so its live accuracy from feedback fails the policy on the canary replica.
    fleet_reg.promote("digits@v3", "production", reason="try v3")
    with traffic(gws, digits):
        out = cli(fleet_reg, "rollout", "d", "--canary-replicas", "1", *policy, "--json")
        assert out.returncode == 5, out.stdout + out.stderr
        wait_for(lambda: versions(gws) == [(1, 3)] * 3, "every replica back on v1")
    st = json.loads(cli(fleet_reg, "status", "d", "--json").stdout)
    assert (st["state"], st["version"], st["epoch"]) == ("aborted", 1, 3)
    assert st["reason"].startswith("canary on r1 rolled back: live accuracy"), st["reason"]
    assert st["reason"].endswith("production moved back to v1"), st["reason"]
    assert {(r["serving"], r["why"]) for r in st["replicas"]} == {(1, "in sync")}
    assert fleet_reg.ref("digits", "production").version_id == \
        fleet_reg.resolve("digits@v1").id
