"""`modelvc deploy watch` stops on SIGINT and SIGTERM wherever the signal lands: its own
handler sets a flag the loop checks (fleet/watch.py) instead of relying on a
KeyboardInterrupt getting through SQLAlchemy and psycopg. A Ctrl-C landing in the pool's
pre-ping used to turn into a "database failed" warning, and the watcher went on."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.fleet import refusals
from modelvc.fleet.controller import Controller
from modelvc.fleet.watch import Watcher
from modelvc.registry import Registry

from .fleet_helpers import wait_for

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "postgresql"])
def idle_reg(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """Deployment d of digits@production (v1), which the fleet refused: every look of a
    watcher reads the deployment, the channel and the refusal, and leaves it alone."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    reg = Registry.init(tmp_path / "repo", meta_url=url)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "weights.bin").write_bytes(b"w" * 64)
    reg.commit(tmp_path / "ck", model="digits", branch="dev", message="v1")
    reg.promote("digits@v1", "production", reason="first", create=True)
    reg.promote("digits@v1", "staging", reason="first", create=True)
    with Controller(reg) as c:
        d = c.create("d", "digits", "production", selector={"app": "digits"})
    ref = reg.ref("digits", "production")
    assert ref.version_id is not None
    refusals.record(reg, d, ref.version_id, ref.revision, "refused in a test", "tester")
    yield reg
    reg.close()


def test_a_signal_at_any_point_of_the_loop_stops_the_watcher(idle_reg: Registry) -> None:
    # Many random points: the loop must end after each, and say which signal ended it.
    # (Before the fix, with Python's KeyboardInterrupt, about 1 in 50 points on
    # PostgreSQL left the loop running.)
    rng = random.Random(11)
    stop = threading.Event()

    def wake_ups() -> None:  # ref moves: NOTIFY on PostgreSQL, looks back to back
        while not stop.is_set():
            idle_reg.promote("digits@v1", "staging", reason="wake-up")
            stop.wait(0.02)

    waker = threading.Thread(target=wake_ups, daemon=True)
    waker.start()
    with Controller(idle_reg) as c:
        try:
            for _ in range(60):
                w = Watcher(c, "d", poll=0.005, safety=0.05)
                sig = rng.choice([signal.SIGINT, signal.SIGTERM])
                delay = rng.uniform(0, 0.1)
                sender = threading.Thread(target=_signal_after_a_look, args=(w, sig, delay))
                ended = threading.Event()
                guard = threading.Thread(target=_stop_if_hung, args=(w, ended), daemon=True)
                with w.stop_on_signals():
                    sender.start()
                    guard.start()
                    w.run()
                    ended.set()
                    sender.join()
                w.close()
                assert w.stopped_by == sig, f"{sig.name} after {delay:.3f}s did not stop it"
        finally:
            stop.set()
            waker.join(10)


def _signal_after_a_look(w: Watcher, sig: signal.Signals, delay: float) -> None:
    wait_for(lambda: w.looks >= 1, "the watcher's first look")
    time.sleep(delay)
    os.kill(os.getpid(), sig)


def _stop_if_hung(w: Watcher, ended: threading.Event) -> None:
    """The signal did not stop it: end the loop anyway (stopped_by 0 fails the test)."""
    if not ended.wait(60):
        w.stopped_by = 0
        w.wake()


def _watch(reg: Registry, log: Path, *entry: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, *entry, "--registry", str(Path(reg.location).parent),
           "deploy", "watch", "d", "--json", "--log-level", "debug", "--poll", "0.01"]
    with open(log, "wb") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("idle_reg", ["postgresql"], indirect=True)
def test_ctrl_c_in_the_pool_pre_ping_stops_deploy_watch(idle_reg: Registry,
                                                        tmp_path: Path) -> None:
    log = tmp_path / "watch.log"
    proc = _watch(idle_reg, log, str(HERE / "signal_in_ping.py"))
    try:
        rc = proc.wait(90)  # generous: a loaded machine; it used to run forever
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise AssertionError(f"deploy watch ignored SIGINT\n{log.read_text()[-3000:]}") from exc
    text = log.read_text()
    assert "signal-in-ping: sent" in text, text[-3000:]
    assert rc == 130 and text.rstrip().endswith("stopped"), (rc, text[-3000:])


@pytest.mark.parametrize("idle_reg", ["sqlite"], indirect=True)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_deploy_watch_stops_on_sigint_and_sigterm(idle_reg: Registry, tmp_path: Path,
                                                  sig: signal.Signals) -> None:
    log = tmp_path / "watch.log"
    proc = _watch(idle_reg, log, "-m", "modelvc.cli.main")
    try:
        wait_for(lambda: ": look 2 done" in log.read_text(), "two looks", 90)
        proc.send_signal(sig)
        rc = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert rc == 128 + sig and text.rstrip().endswith("stopped"), (rc, text[-3000:])
    assert f"{sig.name}: stopping" in text
