"""The fleet reconciler's state machine, driven in process with deployment rows as the
fleet agent would feed them (real registry, real ONNX loads, no fleet database)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelvc.records import Deployment
from modelvc.registry import Registry
from modelvc.serving.config import load_config
from modelvc.serving.fleet_reconcile import Reconciler
from modelvc.serving.gateway import Gateway
from modelvc.serving.protocol import InferRequest
from modelvc.serving.served import ServedModel

from .conftest import Digits, commit_onnx
from .helpers import Gated, in_loop


class Recorded(Reconciler):
    """The reconciler with its reports kept here (the agent sends them to the registry)."""

    def __init__(self, gw: Gateway, replica_id: str) -> None:
        super().__init__(gw, replica_id)
        self.reports: list[str] = []

    def _report(self, sm: ServedModel) -> None:
        self.reports.append(self.state.get(sm.cfg.name, "?"))


def _row(epoch: int, vid: str, state: str, pending: tuple[str, int] | None = None
         ) -> Deployment:
    t = datetime.now(UTC)
    return Deployment("d", "digits", "production", "rolling", {}, vid, None, epoch,
                      pending[0] if pending else None, pending[1] if pending else None,
                      ["r3"], state, "", t, t, rolled=["r3"] if pending else None)


async def _until(what: str, ok: Any) -> None:
    end = time.monotonic() + 120  # a margin for a loaded machine, not a latency bound
    while not ok():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_rerun_rollout_never_serves_the_load_its_first_run_dropped(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    # A rolling rollout to v2 (epoch 2) is interrupted while this replica loads v2, and
    # run again (epoch 4) before that load ends: the second _serve waits for the first
    # one's load of v2, which the first drops (its epoch was superseded). The replica
    # must serve a live v2 at epoch 4, never the dropped, freed one (seen once: every
    # request answered 500 "'OnnxRuntime' object has no attribute '_sess'").
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    v1, v2 = (serve_reg.resolve(f"digits@v{n}").id for n in (1, 2))
    cfg = load_config(None, {"models": [{"model": "digits"}], "port": 0, "grpc_port": 0})

    async def scenario() -> dict[str, Any]:
        gw = Gateway(serve_reg, cfg, workdir=tmp_path / "gw")
        r, sm = Recorded(gw, "r3"), gw.models["digits"]
        try:
            r.reconcile(sm, _row(1, v1, "done"))
            await _until("v1 at epoch 1", lambda: sm.stable.epoch == 1)
            gated = Gated(serve_reg, "digits@v2")
            gw.pool.reg = gated  # type: ignore[assignment]
            r.reconcile(sm, _row(1, v1, "rolling", (v2, 2)))  # our batch: unload, load v2
            await _until("v2's load", gated.entered.is_set)
            assert sm.stable.current is None  # unloaded: 503 "not ready" meanwhile
            r.reconcile(sm, _row(3, v1, "rolling", (v2, 4)))  # aborted (3), run again (4)
            await _until("the second run's read of v2", lambda: gated.reads == 2)
            await asyncio.sleep(0.5)  # it goes on to wait for the first run's load
            gated.open.set()
            await _until("epoch 4", lambda: sm.stable.epoch == 4)
            cur = sm.stable.current
            assert cur is not None and cur.version.id == v2
            assert not cur.closed, "the replica serves a version the pool freed"
            answer = await gw.infer("digits", None, InferRequest(
                None, {}, {"X": digits.x[:4]}, []), None)
            return {"version": answer.version, "epoch": answer.epoch,
                    "loaded": sorted(i.version.number for i in gw.pool.items.values()),
                    "reports": r.reports}
        finally:
            await gw.stop()

    got = in_loop(scenario)
    assert (got["version"], got["epoch"]) == ("2", 4)
    assert got["loaded"] == [2]  # v1 unloaded, the dropped load of v2 freed
    assert got["reports"][-1] == "serving"
