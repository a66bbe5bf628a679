"""The reaper: what a killed pytest started does not outlive it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OWNER = """
import os, subprocess, sys
from tests.services.reaper import watch
watch()
child = subprocess.Popen(["sleep", "600"], start_new_session=True)  # as servers are
print(child.pid, flush=True)
os.kill(os.getpid(), 9)  # no finalizer, no atexit
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_process_group_left_by_a_killed_owner_is_killed() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELVC_TEST_OWNER"}
    done = subprocess.run([sys.executable, "-c", OWNER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 120  # a hang guard: the watcher acts at once
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, 9)
    assert not alive, "the sleep started by the killed owner is still running"
