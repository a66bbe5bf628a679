"""The child process committing a run's staged checkpoints: it runs at the lowest CPU
priority and at full priority while the loop waits; its errors come back as the same
classes; it dies with its parent (kill -9), and what it had not committed stays staged
for recover, each step committed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelvc.api import staging
from modelvc.errors import ModelvcError, PathNotFound
from modelvc.registry import Registry
from modelvc.registry.committer import ProcessCommitter, rebuild
from tests.api.test_staging import _save, _steps


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_the_child_commits_at_the_lowest_priority_and_hurries_when_asked(
        reg: Registry, tmp_path: Path) -> None:
    c = ProcessCommitter(reg)
    try:
        s = staging.stage(_save(tmp_path / "c1", 1), tmp_path / "st", "r-1",
                          {"model": "m", "branch": "b", "metrics": {"step": 1}},
                          reg.location)
        v = c.commit(s)  # the child has opened the registry: its pool threads exist
        assert v.metrics["step"] == 1 and _steps(reg, "m@b") == [1]
        assert staging.pending(tmp_path / "st") == []
        assert _policies(c.proc.pid) == {os.SCHED_IDLE}
        c.hurry(True)
        assert _policies(c.proc.pid) == {os.SCHED_OTHER}
        c.hurry(False)
        assert _policies(c.proc.pid) == {os.SCHED_IDLE}
    finally:
        c.close()
    assert c.proc.returncode == 0  # its input ended: it left


def test_close_does_not_wait_for_a_forked_process_holding_the_pipe(
        reg: Registry, tmp_path: Path) -> None:
    """A process forked after the child started (a DataLoader worker) holds a copy of
    its stdin's write end: close tells the child to leave instead of waiting for EOF."""
    c = ProcessCommitter(reg)
    forked = os.fork()
    if forked == 0:  # the "worker": holds every fd until killed
        time.sleep(600)
        os._exit(0)
    try:
        c.close()
        assert c.proc.returncode == 0 and _alive(forked)
    finally:
        os.kill(forked, signal.SIGKILL)
        os.waitpid(forked, 0)


def test_errors_come_back_as_their_class(reg: Registry, tmp_path: Path) -> None:
    c = ProcessCommitter(reg)
    try:
        gone = staging.Staged(tmp_path / "nothing", {"model": "m"}, {}, os.getpid(), "h", 0.0)
        with pytest.raises(PathNotFound, match="not a staged checkpoint"):
            c.commit(gone)
    finally:
        c.close()
    other = rebuild({"error": "ZeroDivisionError", "message": "division by zero"})
    assert type(other) is ModelvcError and "ZeroDivisionError" in str(other)


def test_kill_9_of_the_training_process_ends_the_child_and_recover_commits_the_rest(
        reg: Registry, tmp_path: Path) -> None:
    """The training process stages 5 checkpoints (the commits of most still pending,
    max_pending=5) and is killed with SIGKILL: its commit process dies with it, and
    recover commits what was left, each step once and in order."""
    child = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pathlib import Path
        from tests.api.test_staging import _save
        from modelvc.registry import Registry
        reg = Registry.open({reg.location!r})
        r = reg.run(model="m", branch="b", max_pending=5)
        futs = [r.submit(folder=_save(Path({str(tmp_path)!r}) / f"c{{s}}", s), step=s)
                for s in (1, 2, 3, 4, 5)]
        while r._committer is None:  # the commit process has started
            time.sleep(0.01)
        print(json.dumps({{"committer": r._committer.proc.pid}}), flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    committer = json.loads(proc.stdout.readline())["committer"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 120  # a margin for a loaded machine
    while _alive(committer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(committer)
    root = Path(reg.location) / "staging"
    committed = sorted(_steps(reg, "m@b")) if reg.models() else []
    left = [s.step for s in staging.pending(root)]
    assert sorted(committed + left) == [1, 2, 3, 4, 5]
    assert [v.metrics["step"] for v in staging.recover(reg, root)] == left
    assert _steps(reg, "m@b") == [5, 4, 3, 2, 1]


def _alive(pid: int) -> bool:
    """Whether PID runs (a zombie counts as ended: its parent is gone or not reaping)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
