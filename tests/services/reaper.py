"""Kill what a pytest process started once it is gone, however it went (kill -9 included).

Fixtures stop their servers in finalizers, which do not run when pytest is killed, and
the servers run in their own sessions (so a Ctrl-C reaches the test, not them): an
aborted run used to leave SeaweedFS and `modelvc server` processes behind. `watch()`
marks the pytest process's environment with MODELVC_TEST_OWNER=<its pid>, which every
child started with `os.environ` (nearly all: `{**os.environ, ...}`) inherits, and starts
this module as a small watcher process. When the owner exits, the watcher kills every
process still carrying the mark, so leftovers of a clean run (a fixture that did not
stop its server) go too, and are named on stderr.

Run as `python -m tests.services.reaper PID`: Linux only (pidfd, /proc).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

MARK = "MODELVC_TEST_OWNER"


def watch() -> None:
    """Mark this process's children and start the watcher (once per process)."""
    if os.environ.get(MARK) == str(os.getpid()) or not sys.platform.startswith("linux"):
        return
    os.environ[MARK] = str(os.getpid())
    subprocess.Popen([sys.executable, "-m", "tests.services.reaper", str(os.getpid())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True,
                     cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def marked(owner: str) -> list[int]:
    """Processes whose environment carries MODELVC_TEST_OWNER=owner (not this one)."""
    needle = f"{MARK}={owner}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def reap(owner: str) -> list[str]:
    """SIGKILL every marked process (a second pass for ones forked meanwhile)."""
    killed = []
    for _ in range(3):
        pids = marked(owner)
        if not pids:
            break
        for pid in pids:
            what = _describe(pid)
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{pid} {what}")
            except OSError:
                pass
        time.sleep(0.2)
    return killed


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already gone
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def main(owner: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is not for us
    os.environ.pop(MARK, None)
    _wait_for_exit(int(owner))
    killed = reap(owner)
    if killed:
        print(f"modelvc tests: killed {len(killed)} process(es) left by pytest {owner}:\n  "
              + "\n  ".join(killed), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
