"""A replica that cannot stage, or dies while staging: no replica switches, and the
deployment says why. Runs on SQLite metadata (gateways poll: the fallback path)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelvc.fleet.controller import Controller, Outcome
from modelvc.registry import Registry
from tests.serving.conftest import Digits, commit_onnx

from .fleet_helpers import GatewayProcess, Load, wait_for

Starter = Callable[..., list[GatewayProcess]]

# A version carrying a Python predictor: replicas with --trust never refuse to load it,
# a real way for one version to load on some replicas of a fleet and not on others.
PREDICTOR = b'''
import time
import numpy as np

class Predictor:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def __init__(self, folder):
        time.sleep(float((folder / "load_seconds").read_text()))

    def predict(self, inputs):
        return {"label": np.argmax(inputs["X"][:, :10], axis=1).astype(np.int64)}
'''


@pytest.fixture
def sqlite_reg(tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Registry]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    reg = Registry.init(tmp_path / "repo")
    commit_onnx(reg, tmp_path, digits.good, "v1")
    reg.promote("digits@v1", "production", reason="first", create=True)
    commit_onnx(reg, tmp_path, b"", "v2-python", extra={"predictor.py": PREDICTOR,
                                                        "load_seconds": b"0"})
    commit_onnx(reg, tmp_path, b"", "v3-slow", extra={"predictor.py": PREDICTOR,
                                                      "load_seconds": b"4"})
    yield reg
    reg.close()


def served(gws: list[GatewayProcess]) -> set[tuple[int, int]]:
    return {(s["version"], s["epoch"]) for s in (g.status() for g in gws)}


def test_one_replica_refusing_the_version_leaves_all_on_the_old(
        sqlite_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(sqlite_reg, 2, trust="any") + start_gateways(sqlite_reg, 1)
    with Controller(sqlite_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        with Load([g.url for g in gws], digits.x) as load:
            out = c.rollout("d", "v2")
            assert not out.ok
            served_before = load.seen.ok
            wait_for(lambda: load.seen.ok > served_before + 50, "traffic after the abort")
        assert "replica r3 failed" in out.reason and "trust policy" in out.reason
        assert load.seen.failed == [] and load.seen.versions == {"1"}
        st = c.status("d")
        assert (st["state"], st["version"], st["epoch"], st["pending"]) == ("aborted", 1, 3,
                                                                           None)
        wait_for(lambda: served(gws) == {(1, 3)}, "v1 re-stamped past the aborted epoch")
        assert "r3" in st["reason"]
        # Every replica dropped what it staged; the channel never moved.
        wait_for(lambda: all(r["staged"] is None for r in c.status("d")["replicas"]),
                 "staged versions to be dropped")
        assert sqlite_reg.ref("digits", "production").version_id == \
            sqlite_reg.resolve("digits@v1").id
        # A fleet that can load it then switches as one.
        ok = c.rollout("d", "v1")
        assert ok.ok and served(gws) == {(1, 4)}


def test_a_replica_killed_mid_stage_aborts_the_rollout(
        sqlite_reg: Registry, start_gateways: Starter) -> None:
    gws = start_gateways(sqlite_reg, 3, trust="any")
    with Controller(sqlite_reg, stale=4.0) as c:  # margin for a busy machine
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        result: list[Outcome] = []
        t = threading.Thread(target=lambda: result.append(c.rollout("d", "v3")))
        t.start()
        wait_for(lambda: all(r["state"] == "staging" for r in c.status("d")["replicas"]),
                 "every replica to be staging")
        gws[1].kill()
        t.join(60)
        out = result[0]
        assert not out.ok and "replica r2 stopped reporting" in out.reason, out.reason
        wait_for(lambda: served([gws[0], gws[2]]) == {(1, 3)}, "r1, r3 to stay on v1")

        def why() -> dict[str, str]:
            return {r["id"]: r["why"] for r in c.status("d")["replicas"]}

        # (their rows follow their HTTP status by one asynchronous report)
        wait_for(lambda: why()["r1"] == why()["r3"] == "in sync", "r1, r3 rows in sync")
        st = c.status("d")
        assert st["state"] == "aborted" and st["version"] == 1
        assert why()["r2"].startswith("silent")
