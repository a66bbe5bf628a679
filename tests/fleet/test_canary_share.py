"""Canary by share of traffic (`--canary-share`): every gateway serves the new version to
the same sticky share of request keys at the trial's epoch, the gateways' statistics are
judged by the canary policy, then every gateway promotes the (warm) canary at that epoch
or drops it and serves the stable version at the next one."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelvc.canary import Policy
from modelvc.fleet.controller import Controller, Outcome
from modelvc.registry import Registry
from tests.serving.conftest import Digits, commit_onnx

from .fleet_helpers import GatewayProcess, Load, WatchProcess, get_json, wait_for
from .test_atomic import versions
from .test_canary import traffic
from .test_stage_failures import PREDICTOR

Starter = Callable[..., list[GatewayProcess]]


def ask(url: str, x: Any, key: str | None = None, seen: int | None = None
        ) -> tuple[int, int]:
    """(version, epoch) that answered one request with this key (and epoch seen)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Request-Key"] = key
    if seen is not None:
        headers["X-Modelvc-Epoch"] = str(seen)
    body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64],
                                   "data": x.reshape(-1).tolist()}]})
    try:
        conn.request("POST", "/v2/models/digits/infer", body, headers)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
        return int(resp.getheader("x-modelvc-version", "0")), \
            int(resp.getheader("x-modelvc-epoch", "-1"))
    finally:
        conn.close()


def wait_equal(get: Callable[[], Any], want: Any, what: str, limit: float = 60.0) -> None:
    """Wait until `get()` is `want` (a replica's report may still be on its way: the
    agents report fire-and-forget); on giving up, say what it was instead."""
    last: list[Any] = []

    def check() -> bool:
        last[:] = [get()]
        return bool(last[0] == want)

    try:
        wait_for(check, what, limit)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last[0] if last else None!r} != {want!r}") from exc


def fleet_canary(g: GatewayProcess) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = get_json(f"{g.url}/modelvc/status")["digits"]["fleet_canary"]
    return doc


def test_share_canary_is_sticky_on_every_gateway_and_promoted_at_one_epoch(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(fleet_reg, 2)
    policy = Policy(min_samples=40, min_feedback=40, window=90.0, check_latency=False)
    with Controller(fleet_reg, canary_share=0.3, policy=policy) as c:
        c.create("d", "digits", "production")  # atomic: --canary-share makes this canary
        assert c.rollout("d").ok  # adopts v1 at epoch 1: not judged
        result: list[Outcome] = []
        trial = threading.Thread(target=lambda: result.append(c.rollout("d", "v2")))
        trial.start()
        try:
            wait_for(lambda: all(fleet_canary(g) is not None for g in gws),
                     "every gateway to serve the canary share")
            assert [fleet_canary(g) for g in gws] == [
                {"version": 2, "percent": 30.0, "epoch": 2}] * 2
            st = c.status("d")
            assert (st["state"], st["canary_share"], st["pending"]) == ("rolling", 0.3, 2)
            # a gateway serves its share before its report reaches the database
            wait_equal(lambda: {r["state"] for r in c.status("d")["replicas"]}, {"canary"},
                       "every replica's row to say canary")
            # The same keys get the same side on every gateway; ~30% get the canary, at
            # the trial's epoch; the others the stable version at the served epoch.
            keys = [f"user-{i}" for i in range(150)]
            sides = [[ask(g.url, digits.x[i % 50], key) for i, key in enumerate(keys)]
                     for g in gws]
            assert sides[0] == sides[1]
            assert set(sides[0]) == {(2, 2), (1, 1)}
            share = sum(1 for v in sides[0] if v == (2, 2)) / len(keys)
            assert 0.18 < share < 0.42, share
            # A caller who saw the canary's epoch stays on it, whatever its key.
            stable_key = keys[sides[0].index((1, 1))]
            assert ask(gws[1].url, digits.x[0], stable_key, seen=2) == (2, 2)
            assert ask(gws[1].url, digits.x[0], stable_key) == (1, 1)
            assert not result  # no feedback yet: the policy waits for live accuracy
            with traffic(gws, digits) as loads:  # labelled traffic: the verdict comes
                trial.join(120)
                wait_for(lambda: all("2" in t.tally.by_version for t in loads), "v2 traffic")
        finally:
            trial.join(120)
        out = result[0]
        assert out.ok, out.reason
        assert out.reason.startswith("canary share 30% on r1, r2: canary held over"), \
            out.reason
        assert "accuracy" in out.reason and "drift" in out.reason
        # The canary's epoch is the fleet's: promoted everywhere at epoch 2, v1 kept warm.
        assert versions(gws) == [(2, 2)] * 2
        assert [fleet_canary(g) for g in gws] == [None, None]
        st = c.status("d")
        assert (st["state"], st["version"], st["previous"], st["canary_share"]) == (
            "done", 2, 1, None)
        wait_equal(lambda: {(r["state"], r["warm"], r["why"])
                            for r in c.status("d")["replicas"]},
                   {("serving", 1, "in sync")}, "every replica's row serving v2, v1 warm")
    assert fleet_reg.resolve("digits@production").number == 2


def test_regressing_share_canary_from_deploy_watch_goes_back_everywhere(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits, tmp_path: Path) -> None:
    """`deploy watch --canary-share`: v3 (shuffled labels) is promoted; its live accuracy
    (or its outputs' drift) on half of every gateway's requests fails the policy, so
    every gateway drops it at the next epoch, the channel goes back, and sticky clients
    never see the epoch go back."""
    gws = start_gateways(fleet_reg, 2)
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok  # v1 at epoch 1
    w = WatchProcess(fleet_reg._layout.root.parent, "d", "--canary-share", "0.5",
                     "--min-samples", "40", "--min-feedback", "40", "--no-latency",
                     log=tmp_path / "w.log")
    try:
        with traffic(gws, digits), Load([g.url for g in gws], digits.x) as load:
            fleet_reg.promote("digits@v3", "production", reason="try v3")
            (out,) = w.wait_lines(1, "the watcher's verdict")
            # The verdict first: a wrong one should say so, not time out below.
            assert not out["ok"] and (out["state"], out["epoch"]) == ("aborted", 3), out
            # Shuffled labels fail both checks; which has its samples first depends on
            # how fast feedback follows requests on a busy machine: either is right.
            assert out["reason"].startswith(("canary share 50% rolled back: live accuracy",
                                             "canary share 50% rolled back: output drift")), out
            assert out["reason"].endswith("production moved back to v1"), out
            wait_for(lambda: versions(gws) == [(1, 3)] * 2,
                     f"every gateway back on v1 (verdict: {out})", limit=120)
            seen = load.seen.ok
            wait_for(lambda: load.seen.ok > seen + 50, "traffic after the rollback")
        assert load.seen.failed == [] and load.seen.backwards == []
        assert load.seen.versions == {"1", "3"}
        assert [fleet_canary(g) for g in gws] == [None, None]
        assert fleet_reg.resolve("digits@production").number == 1
        (entry,) = fleet_reg.audit(action="deploy-refuse")
        assert entry.after["number"] == 3 and entry.reason == out["reason"]
    finally:
        w.stop()


def test_a_gateway_that_cannot_load_the_canary_fails_the_share_at_once(
        fleet_reg: Registry, start_gateways: Starter, tmp_path: Path) -> None:
    # r2 refuses Python predictors (trust never): it cannot serve v4's share; r1 can.
    gws = start_gateways(fleet_reg, 1, trust="any") + start_gateways(fleet_reg, 1)
    commit_onnx(fleet_reg, tmp_path, b"", "v4-python",
                extra={"predictor.py": PREDICTOR, "load_seconds": b"0"})
    with Controller(fleet_reg, canary_share=0.2, strategy="canary") as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        out = c.rollout("d", "v4")
        assert not out.ok
        assert out.reason.startswith("canary share 20%: replica r2 failed: LoadFailed"), \
            out.reason
        wait_for(lambda: versions(gws) == [(1, 3)] * 2, "both back on v1 at epoch 3")
        assert [fleet_canary(g) for g in gws] == [None, None]  # r1 dropped its share
        wait_for(lambda: {r["state"] for r in c.status("d")["replicas"]} == {"serving"},
                 "both rows serving")
        # r1 unloaded v4 (no slot holds it any more)
        wait_for(lambda: "4" not in get_json(f"{gws[0].url}/v2/models/digits")["versions"],
                 "r1 to unload v4")
