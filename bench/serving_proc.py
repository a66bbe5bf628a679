"""What bench/serving.py reads of the gateway's process from /proc: its RSS, CPU time
per thread kind, run-queue waits and context switches (counts and CPU are what a loaded
machine inflates least)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, [0.0]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append(float(line.split()[1]) * 1024)
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (clock ticks from /proc)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def loader_cpu(pid: int) -> tuple[float, set[int]]:
    """CPU seconds of the gateway's loading threads so far (the scheduler's ns, not
    ticks), and the CPUs they last ran on."""
    total, cpus = 0.0, set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if not (task / "comm").read_text().startswith("modelvc-load"):
                continue
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
            cpus.add(int((task / "stat").read_text().rsplit(")", 1)[1].split()[36]))
    return total, cpus


def helper_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds so far and RSS bytes now of the gateway's checkout helper processes
    (children named modelvc-chkout: a first load's checkout runs there,
    serving/checkouts.py)."""
    cpu = rss = 0.0
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if not proc.name.isdigit():
                continue
            head, _, tail = (proc / "stat").read_text().rpartition(")")
            f = tail.split()
            if int(f[1]) == pid and head.endswith("(modelvc-chkout"):
                cpu += int((proc / "schedstat").read_text().split()[0]) / 1e9
                rss += int(f[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def run_delay(pid: int, main_only: bool = False) -> float:
    """Seconds the threads of a process (or its main thread only) have waited on a run
    queue so far (runnable, not running: another thread had their CPU)."""
    total = 0.0
    tasks = [Path(f"/proc/{pid}/task/{pid}")] if main_only else \
        list(Path(f"/proc/{pid}/task").iterdir())
    for task in tasks:
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[1]) / 1e9
    return total


def loop_switches(pid: int) -> int:
    """Context switches of the gateway's event loop thread (the main thread) so far,
    voluntary (it blocked: on the GIL, or idle in epoll) and not: a count, which the
    machine's load does not inflate the way it does a latency."""
    n = 0
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            n += int(line.split()[1])
    return n


def loader_switches(pid: int) -> int:
    """Voluntary context switches of the gateway's loading threads so far: each is a
    block (a GIL wait, a sleep, a file or database call), most a GIL hand-off with the loop."""
    n = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith("modelvc-load"):
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches"):
                        n += int(line.split()[1])
    return n
