"""scripts/start-postgres.sh can be run again and again: its file lock (one run at a time)
is not inherited by the PostgreSQL it starts. A postmaster holding it blocked every later
call for as long as the server ran (a second `scripts/test` on the machine, bench/fleet.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.services.postgres import SCRIPT

LOCK = "/tmp/modelvc-start-postgres.lock"


def _holders() -> list[str]:
    """The command lines of the processes with LOCK open."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == LOCK for fd in fds):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes()
                             .replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="the script runs as root (apt, runuser)")
def test_the_script_runs_again_while_its_server_runs() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELVC_TEST_OWNER"}  # as postgres.py
    for _ in range(2):  # the cluster is up (the suite started it): both return at once
        done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                              timeout=300, env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().startswith("postgresql+psycopg://"), done.stdout
    servers = [c for c in _holders() if "postgres" in c and "start-postgres" not in c]
    assert servers == [], f"PostgreSQL processes hold the script's lock: {servers}"
