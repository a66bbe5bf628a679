"""The fleet's epoch guarantee (a caller that sends back the newest epoch it saw is never
answered from an older one) with the delays a busy machine brings, injected so each race
happens every time: a database read that returns after a newer notification, a
notification that arrives after a caller that saw its epoch, a member that loads the
trial's version later than another. Real gateways (in this process, so their agents'
reads and notifications can be held back), a real PostgreSQL, real ONNX models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.canary import Policy
from modelvc.fleet.controller import Controller, Outcome
from modelvc.registry import Registry
from modelvc.serving.config import load_config
from modelvc.serving.fleet_agent import FleetAgent
from modelvc.serving.runner import BackgroundServer
from modelvc.serving.served import ServedModel
from tests.services.ports import free_port
from tests.serving.conftest import Digits

from .fleet_helpers import wait_for
from .test_canary_share import ask

Start = Callable[[str], BackgroundServer]


@pytest.fixture
def start_member(fleet_reg: Registry, tmp_path: Path) -> Iterator[Start]:
    """start_member("r1") -> a gateway of the fleet, in this process (its own Registry)."""
    running: list[tuple[BackgroundServer, Registry]] = []

    def start(rid: str) -> BackgroundServer:
        cfg = load_config(None, {
            "models": [{"model": "digits"}], "port": free_port(), "grpc_port": 0,
            "poll_interval": 0.05,
            "fleet": {"replica_id": rid, "heartbeat": 0.2, "labels": {"app": "digits"}}})
        reg = Registry.open(fleet_reg._layout.root.parent)
        srv = BackgroundServer(reg, cfg, workdir=tmp_path / f"gw-{rid}")
        running.append((srv, reg))
        return srv.start()

    yield start
    for srv, reg in running:
        srv.stop()
        reg.close()


def agent_of(srv: BackgroundServer) -> FleetAgent:
    agent = srv.gateway.agent
    assert isinstance(agent, FleetAgent)
    return agent


def digits_of(srv: BackgroundServer) -> ServedModel:
    return srv.gateway.models["digits"]


def vid(reg: Registry, number: int) -> str:
    return reg.resolve(f"digits@v{number}").id


def share_key(percent: float) -> str:
    from modelvc.canary import route_to_canary

    return next(k for k in (f"user-{i}" for i in range(1000)) if route_to_canary(percent, k))


def at_v1(fleet_reg: Registry) -> None:
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok  # v1 at epoch 1


def test_a_read_that_returns_after_a_newer_notification_changes_nothing(
        fleet_reg: Registry, start_member: Start, digits: Digits) -> None:
    """A poll reads the deployment before a share trial starts and returns after the
    notifications of its stage and of its share going live: applying that read would
    drop the share (same epoch, older row), and a caller of the trial's epoch would be
    answered by v1 at epoch 1 until the next poll brought the share back."""
    g = start_member("r1")
    at_v1(fleet_reg)
    agent, sm = agent_of(g), digits_of(g)
    rollouts = agent.rollouts
    assert rollouts is not None
    real = rollouts.list_deployments
    held, release = threading.Event(), threading.Event()
    reads: list[int] = []

    def slow_read(*a: Any, **kw: Any) -> Any:
        rows = real(*a, **kw)
        reads.append(1)
        if not release.is_set():
            held.set()
            release.wait(60)
        return rows

    rollouts.list_deployments = slow_read  # type: ignore[method-assign]
    assert held.wait(30), "the gateway did not poll its deployment"
    d = fleet_reg.rollouts.get_deployment("d")
    d = fleet_reg.rollouts.begin_stage("d", d.epoch, vid(fleet_reg, 2), ["r1"], share=0.5)
    wait_for(lambda: agent.staged.get("digits") is not None, "r1 to stage v2")
    fleet_reg.rollouts.start_share("d", d.epoch)
    wait_for(lambda: sm.fleet_share is not None and sm.fleet_share.percent == 50,
             "r1 to serve the share")
    # The stale read returns; the next poll is held (it would repair the damage).
    n = len(reads)
    held.clear()
    release.set()
    release.clear()
    wait_for(lambda: len(reads) > n and held.is_set(), "the next poll")
    try:
        assert sm.fleet_share is not None and sm.fleet_share.epoch == 2
        key = share_key(50)
        assert ask(g.url, digits.x[0], key) == (2, 2)
        assert ask(g.url, digits.x[0], "anyone", seen=2) == (2, 2)
    finally:
        release.set()


def test_a_caller_ahead_of_the_notification_of_an_abort_gets_the_new_epoch(
        fleet_reg: Registry, start_member: Start, digits: Digits) -> None:
    """A stage is aborted (v1 re-stamped at epoch 3); one gateway switched, so a caller
    saw epoch 3; this gateway's notification (and poll) are late: it must not answer
    that caller from epoch 1."""
    g = start_member("r1")
    at_v1(fleet_reg)
    agent = agent_of(g)
    late: list[dict[str, Any]] = []

    async def no_poll() -> None:
        return None

    # Notifications are kept back and polls skipped: this gateway hears nothing.
    agent._apply_payload = late.append  # type: ignore[method-assign]
    agent._poke_all = no_poll  # type: ignore[method-assign]
    d = fleet_reg.rollouts.get_deployment("d")
    d = fleet_reg.rollouts.begin_stage("d", d.epoch, vid(fleet_reg, 2), ["r1"])
    d = fleet_reg.rollouts.abort_stage("d", d.epoch, "refused in a test")
    assert d.epoch == 3
    wait_for(lambda: len(late) >= 2, "both notifications (held back)")
    assert ask(g.url, digits.x[0], "someone") == (1, 1)  # nobody says otherwise yet
    assert ask(g.url, digits.x[0], "someone", seen=3) == (1, 3)
    assert ask(g.url, digits.x[0], "someone") == (1, 3)
    # An epoch the deployment never had (made up, or another fleet's) changes nothing.
    assert ask(g.url, digits.x[0], "someone", seen=99) == (1, 3)


def test_a_share_goes_live_only_once_every_member_holds_it(
        fleet_reg: Registry, start_member: Start, digits: Digits) -> None:
    """r2 loads the trial's version later than r1 (its load is held back): r1 must not
    serve the trial's epoch meanwhile (a caller who saw it there would be answered by
    v1 at epoch 1 on r2). Once both hold it, both serve it, to the same keys."""
    r1, r2 = start_member("r1"), start_member("r2")
    at_v1(fleet_reg)
    pool = r2.gateway.pool
    real_hold, go = pool.hold, threading.Event()

    async def slow_hold(v: Any) -> Any:
        if v.number == 2:
            while not go.is_set():
                await asyncio.sleep(0.01)
        return await real_hold(v)

    pool.hold = slow_hold  # type: ignore[method-assign]
    policy = Policy(min_samples=10**6, window=3.0)  # no verdict: rolled back after 3 s
    result: list[Outcome] = []
    with Controller(fleet_reg, canary_share=0.5, policy=policy) as c:
        trial = threading.Thread(target=lambda: result.append(c.rollout("d", "v2")))
        trial.start()
        try:
            a1, s1 = agent_of(r1), digits_of(r1)
            wait_for(lambda: a1.staged.get("digits") is not None
                     or s1.fleet_share is not None, "r1 to load v2")
            key = share_key(50)
            for _ in range(20):
                assert s1.fleet_share is None
                assert ask(r1.url, digits.x[0], key) == (1, 1)
            go.set()
            wait_for(lambda: all(digits_of(g).fleet_share is not None
                                 and digits_of(g).fleet_share.percent == 50  # type: ignore[union-attr]
                                 for g in (r1, r2)), "both to serve the share")
            assert [ask(g.url, digits.x[0], key) for g in (r1, r2)] == [(2, 2)] * 2
        finally:
            go.set()
            trial.join(120)
    assert not result[0].ok and result[0].deployment.epoch == 3, result[0]
    wait_for(lambda: all(ask(g.url, digits.x[0], key) == (1, 3) for g in (r1, r2)),
             "both back on v1 at epoch 3")
