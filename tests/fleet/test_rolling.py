"""The rolling strategy: batches of replicas unload, load and serve the new version, so no
replica ever holds two versions; a replica that cannot load it aborts the rollout and the
replicas already moved return to the served version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from tests.serving.conftest import commit_onnx

from .fleet_helpers import GatewayProcess, get_json, wait_for
from .test_stage_failures import PREDICTOR, served

Starter = Callable[..., list[GatewayProcess]]


def loaded(g: GatewayProcess) -> list[str]:
    versions: list[str] = get_json(f"{g.url}/v2/models/digits")["versions"]
    return versions


def test_rolling_in_batches_and_abort(fleet_reg: Registry, start_gateways: Starter,
                                      tmp_path: Path) -> None:
    # r3 refuses Python predictors (trust never): v4 rolls onto r1, r2, then fails on r3.
    gws = start_gateways(fleet_reg, 2, trust="any") + start_gateways(fleet_reg, 1)
    commit_onnx(fleet_reg, tmp_path, b"", "v4-python",
                extra={"predictor.py": PREDICTOR, "load_seconds": b"0"})
    with Controller(fleet_reg, batch=2, stale=5.0) as c:
        c.create("d", "digits", "production", strategy="rolling")
        assert c.rollout("d").ok  # adopts v1: already loaded everywhere, nothing reloads
        assert served(gws) == {(1, 1)}

        rolled: list[list[str]] = []  # the batches as the deployment row showed them
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                r = c.rollouts.get_deployment("d").rolled
                if r is not None and (not rolled or rolled[-1] != r):
                    rolled.append(r)

        t = threading.Thread(target=sample)
        t.start()
        try:
            out = c.rollout("d", "v2")
        finally:
            done.set()
            t.join(30)
        assert out.ok, out.reason
        assert served(gws) == {(2, 2)}
        steps = [r for r in rolled if r]  # the sampler may miss the first batch
        assert steps[-1] == ["r1", "r2", "r3"], rolled
        assert all(r in (["r1", "r2"], ["r1", "r2", "r3"]) for r in steps), rolled
        # No replica keeps the old version loaded (no warm previous: not a one-step
        # rollback fleet; that is the atomic strategy's trade).
        assert [loaded(g) for g in gws] == [["2"]] * 3
        st = c.status("d")
        assert {r["why"] for r in st["replicas"]} == {"in sync"}
        assert {r["warm"] for r in st["replicas"]} == {None}

        c.batch = 1
        bad = c.rollout("d", "v4")
        assert not bad.ok and "replica r3 failed" in bad.reason, bad.reason
        # r1 and r2 had moved to v4; the abort sends every replica back to v2 (epoch 4).
        wait_for(lambda: served(gws) == {(2, 4)}, "every replica back on v2")
        assert [loaded(g) for g in gws] == [["2"]] * 3
        st = c.status("d")
        assert (st["state"], st["version"], st["epoch"]) == ("aborted", 2, 4)
        wait_for(lambda: {r["why"] for r in c.status("d")["replicas"]} == {"in sync"},
                 "every replica in sync")
