"""A `deploy rollout` killed (kill -9) at any point of its switch leaves a state the next
command resolves, and the fleet's epoch guarantee holds throughout: `deploy status` says
what is pending and how to finish or drop it, and running the rollout again finishes it
(the deployment's lease, fleet/controller.py, tells an interrupted switch from one in
progress). Real gateway processes, real PostgreSQL, sticky clients carrying epochs.
Before the fix the pending switch stayed forever: the next rollout failed with
"deployment 'd' moved ... another controller is rolling it out"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from tests.services.clirun import run
from tests.serving.conftest import Digits

from .conftest import make_registry
from .fleet_helpers import GatewayProcess, Load, WatchProcess, spawn, wait_for
from .test_stage_failures import served

HERE = Path(__file__).parent
KILL_AT = (HERE / "kill_at.py").read_text()  # run as `python -c KILL_AT FUNCTION N ARGS`
Starter = Callable[..., list[GatewayProcess]]


def _cli(reg: Registry, *args: str, kill_at: tuple[str, int] | None = None,
         sig: str = "SIGKILL", process: bool = False) -> subprocess.CompletedProcess[str]:
    """`modelvc ARGS` in a process of its own when it is killed (kill_at) or when
    `process` (another controller than this test's), else in this process
    (tests/services/clirun.py): what the command says and does (~0.5 s of CPU saved)."""
    argv = ["--registry", str(reg._layout.root.parent), *args]
    if kill_at is None and not process:
        return run(argv, env={"MODELVC_AUTHOR": "t"})
    # Forked from the gateways' zygote, which imported the CLI (~0.5 s of CPU a start):
    # still a process of its own, killed with a real SIGKILL (or signalled).
    env = os.environ | {"MODELVC_AUTHOR": "t", "KILL_AT_SIGNAL": sig}
    if kill_at:
        p = spawn([kill_at[0], str(kill_at[1]), *argv], env, code=KILL_AT)
    else:
        p = spawn(argv, env)
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.wait(), out, err)


def _status(reg: Registry) -> dict[str, Any]:
    p = _cli(reg, "deploy", "status", "d", "--json")
    assert p.returncode == 0, p.stderr
    doc: dict[str, Any] = json.loads(p.stdout)
    return doc


# (where the controller dies, what is pending after: (version, the channel names it))
POINTS = [(("begin_stage", 1), True, False),   # stage begun, replicas loading
          (("_wait", 1), True, False),         # every replica staged, channel not moved
          (("promote", 1), True, True),        # channel moved, before the commit point
          (("commit_flip", 1), False, True)]   # the commit point passed, not verified


def test_a_rollout_killed_at_any_point_is_finished_by_the_next(
        fleet_reg: Registry, start_gateways: Starter, digits: Digits) -> None:
    gws = start_gateways(fleet_reg, 3)
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
    number = 1
    with Load([g.url for g in gws], digits.x) as load:
        wait_for(lambda: load.seen.ok > 30, "traffic")
        for (where, pending, moved) in POINTS:
            number = 3 - number  # v2, v1, v2, v1
            before = _status(fleet_reg)
            p = _cli(fleet_reg, "deploy", "rollout", "d", "--to", f"v{number}",
                     kill_at=where)
            assert p.returncode == -9 and f"kill-at: {where[0]}" in p.stderr, \
                (p.returncode, p.stderr)
            doc = _status(fleet_reg)
            channel = fleet_reg.ref("digits", "production").version_id
            assert (channel == fleet_reg.resolve(f"digits@v{number}").id) is moved, where
            if pending:
                # Nobody switched: every replica still serves the old version at the old
                # epoch, and status says the switch is interrupted and what to run.
                assert doc["pending"] == number and doc["epoch"] == before["epoch"], doc
                assert "interrupted" in doc["pending_why"], doc
                assert "modelvc deploy rollout d" in doc["pending_why"], doc
                assert served(gws) == {(3 - number, before["epoch"])}, where
            else:
                # Committed: every replica converges on the new version, one epoch.
                assert doc["pending"] is None and doc["version"] == number, doc
                want = {(number, before["epoch"] + 1)}
                wait_for(lambda w=want: served(gws) == w,
                         "the fleet converging after the commit point")
            again = _cli(fleet_reg, "deploy", "rollout", "d", "--to", f"v{number}")
            assert again.returncode == 0, again.stdout + again.stderr
            doc = _status(fleet_reg)
            assert doc["state"] == "done" and doc["version"] == number, doc
            assert doc["pending"] is None and doc["channel_ahead"] is None, doc
            assert len(served(gws)) == 1 and served(gws) == {(number, doc["epoch"])}
            wait_for(lambda n=load.seen.ok: load.seen.ok > n + 20, "traffic after it")
    assert load.seen.failed == [] and load.seen.backwards == [], \
        (load.seen.failed[:5], load.seen.backwards[:5])
    assert load.seen.versions == {"1", "2"}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_fleet_reg(request: pytest.FixtureRequest, tmp_path: Path, digits: Digits,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The fleet registry of conftest (digits v1..v3) on each metadata backend: the
    lease is a flock on SQLite, an advisory lock on PostgreSQL."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    reg = make_registry(tmp_path / "repo", url, digits)  # type: ignore[arg-type]
    yield reg
    reg.close()


def test_deploy_abort_drops_an_interrupted_switch(
        any_fleet_reg: Registry, start_gateways: Starter) -> None:
    fleet_reg = any_fleet_reg
    gws = start_gateways(fleet_reg, 2)
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
    epoch = _status(fleet_reg)["epoch"]
    p = _cli(fleet_reg, "deploy", "rollout", "d", "--to", "v2", kill_at=("promote", 1))
    assert p.returncode == -9, p.stderr
    text = _cli(fleet_reg, "deploy", "status", "d").stdout
    assert "pending v2 at epoch" in text and "modelvc deploy abort d" in text, text
    ab = _cli(fleet_reg, "deploy", "abort", "d")
    assert ab.returncode == 0 and "interrupted rollout of v2" in ab.stdout, ab.stderr
    doc = _status(fleet_reg)
    # Every replica back on v1 at epoch+2; the channel (moved before the kill) names
    # v2, and status says how the fleet follows it.
    assert doc["pending"] is None and doc["epoch"] == epoch + 2 and doc["version"] == 1
    assert doc["channel_ahead"] and "deploy rollout d" in doc["channel_ahead"], doc
    wait_for(lambda: served(gws) == {(1, epoch + 2)}, "every replica on v1 at epoch+2")
    assert _cli(fleet_reg, "deploy", "abort", "d").returncode == 2  # nothing pending


def test_a_rollout_in_progress_is_left_to_its_controller(
        any_fleet_reg: Registry, start_gateways: Starter) -> None:
    # A live controller's pending switch is neither dropped nor aborted by another
    # command: they say who holds it. (Its lease, held here as a running rollout holds it.)
    reg = any_fleet_reg
    gws = start_gateways(reg, 1)
    with Controller(reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
        d = c.rollouts.get_deployment("d")
        with c.rollouts.lease("d") as held:
            assert held
            c.rollouts.begin_stage("d", d.epoch, reg.resolve("digits@v2").id, ["r1"])
            doc = _status(reg)
            assert doc["pending"] == 2 and "switching it now" in doc["pending_why"], doc
            for args in (("rollout", "d", "--to", "v2"), ("abort", "d")):
                p = _cli(reg, "deploy", *args, process=True)
                assert p.returncode == 5, p.stderr
                assert "another controller" in p.stderr or "still running" in p.stderr
            assert c.rollouts.get_deployment("d").pending_id is not None
        # its controller gone (the lease dropped), the next rollout finishes the switch
        assert _cli(reg, "deploy", "rollout", "d", "--to", "v2").returncode == 0
    assert served(gws) == {(2, _status(reg)["epoch"])}


def test_ctrl_c_in_a_rollout_drops_its_switch_and_says_so(
        any_fleet_reg: Registry, start_gateways: Starter) -> None:
    # SIGINT once every replica has staged (a real process, the signal sent to itself
    # there): the rollout drops its pending switch, exits 130 with one line naming what
    # to run; every replica still serves v1, and the next rollout goes through.
    reg = any_fleet_reg
    gws = start_gateways(reg, 2)
    with Controller(reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
    epoch = _status(reg)["epoch"]
    p = _cli(reg, "deploy", "rollout", "d", "--to", "v2", kill_at=("_wait", 1),
             sig="SIGINT")
    lines = [x for x in p.stderr.splitlines() if not x.startswith("kill-at:")]
    assert p.returncode == 130 and "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1 and lines[0].startswith(
        "interrupted by SIGINT: `modelvc deploy rollout` stopped"), p.stderr
    assert "modelvc deploy status d" in lines[0], lines
    doc = _status(reg)
    assert doc["pending"] is None and doc["version"] == 1 and doc["epoch"] == epoch + 2
    assert "interrupted" in doc["reason"], doc
    wait_for(lambda: served(gws) == {(1, epoch + 2)}, "every replica on v1")
    assert _cli(reg, "deploy", "rollout", "d", "--to", "v2").returncode == 0
    assert served(gws) == {(2, _status(reg)["epoch"])}


def test_a_watcher_finishes_a_rollout_killed_after_moving_the_channel(
        fleet_reg: Registry, start_gateways: Starter, tmp_path: Path) -> None:
    # The channel names v2, the switch to it is pending, its controller is dead: a
    # watcher's first look drops the switch (epoch+2) and rolls v2 out (epoch+3).
    gws = start_gateways(fleet_reg, 2)
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
    epoch = _status(fleet_reg)["epoch"]
    p = _cli(fleet_reg, "deploy", "rollout", "d", "--to", "v2", kill_at=("promote", 1))
    assert p.returncode == -9, p.stderr
    assert _status(fleet_reg)["pending"] == 2
    w = WatchProcess(fleet_reg._layout.root.parent, "d", log=tmp_path / "watch.log")
    try:
        (out,) = w.wait_lines(1, "the watcher's rollout")
        assert out["ok"] and out["state"] == "done", (out, w.log.read_text()[-3000:])
    finally:
        w.stop()
    doc = _status(fleet_reg)
    assert (doc["version"], doc["epoch"], doc["pending"]) == (2, epoch + 3, None), doc
    assert served(gws) == {(2, epoch + 3)}


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_stopped_controller_loses_its_lease_within_the_ttl(
        fleet_reg: Registry, start_gateways: Starter) -> None:
    # SIGSTOP once every replica has staged: the process and its database session stay,
    # as a lost machine's half-open connection does. Its lease ends within
    # MODELVC_LEASE_TTL (before: never, while the session lived), status calls the
    # switch interrupted and the next rollout finishes it. Let go on, the stopped
    # controller is refused at its next step (the epoch moved) and changes nothing.
    gws = start_gateways(fleet_reg, 2)
    with Controller(fleet_reg) as c:
        c.create("d", "digits", "production")
        assert c.rollout("d").ok
    stopped = subprocess.Popen(
        [sys.executable, str(HERE / "kill_at.py"), "_wait", "1", "--registry",
         str(fleet_reg._layout.root.parent), "deploy", "rollout", "d", "--to", "v2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"MODELVC_AUTHOR": "t", "KILL_AT_SIGNAL": "SIGSTOP",
                          "MODELVC_LEASE_TTL": "2"})
    try:
        wait_for(lambda: _stopped(stopped.pid), "the controller stopping", limit=300)
        assert _status(fleet_reg)["pending"] == 2
        with Controller(fleet_reg) as c:
            wait_for(lambda: not c.running("d"), "its lease ending", limit=120)
        doc = _status(fleet_reg)
        assert doc["pending"] == 2 and "interrupted" in doc["pending_why"], doc
        again = _cli(fleet_reg, "deploy", "rollout", "d", "--to", "v2")
        assert again.returncode == 0, again.stdout + again.stderr
        done = _status(fleet_reg)
        assert done["state"] == "done" and done["version"] == 2, done
        os.kill(stopped.pid, signal.SIGCONT)
        _, err = stopped.communicate(timeout=300)
        assert stopped.returncode == 5 and "Traceback" not in err, (stopped.returncode, err)
        after = _status(fleet_reg)
        assert (after["version"], after["epoch"], after["pending"]) == \
            (2, done["epoch"], None), after
        assert served(gws) == {(2, done["epoch"])}
    finally:
        if stopped.poll() is None:
            stopped.kill()
            stopped.wait(60)
