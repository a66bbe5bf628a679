"""Where a suite run's time goes, per test module: wall, CPU of the pytest process, CPU of
its descendant processes (servers, gateways, CLI calls, zygotes' children, Chromium).

    python -m pytest -p tests.services.modtime -n 3 --dist loadscope --no-loadscope-reorder
    python -m tests.services.modtime              # the table, most CPU first
    python -m tests.services.modtime --wall       # longest wall first (LONG_FIRST's order)
    python -m tests.services.modtime --schedule   # per worker, what ran when; the tail

CPU is what to compare on a busy machine (wall grows with the load). Each xdist worker
writes its own file into MODELVC_MODTIME_DIR (default /tmp/modelvc-modtime). A module
counts from its first test's start to its last test's end (its module fixtures'
teardown included); descendants' CPU is what they burnt meanwhile, whether they were
reaped or are still running (read from /proc at the module's start and end), so a
per-worker browser or zygote charges each module for its own share. Session fixtures'
set-up counts with the worker's first module; not counted: what runs outside any test
(collection), the worker's last teardown (its session fixtures', where Chromium's
renderers leave the tree) and processes that left the tree (daemons, orphans).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Generator
from pathlib import Path

import pytest

OUT = Path(os.environ.get("MODELVC_MODTIME_DIR", "/tmp/modelvc-modtime"))
_modules: dict[str, list[float]] = {}  # module -> [wall, self cpu, children cpu, tests]


def _descendants_cpu() -> float:
    """User + system CPU of this process's live descendants, each with what it reaped
    (a module's server, a zygote and the children it reaped, Playwright's driver and the
    Chromium it runs): CPU burnt by a process that outlives a module (a per-worker
    browser or zygote) counts with the module that was running meanwhile, not with
    the test that happened to reap it."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(x) for x in fields[11:15]) / _TICK  # utime stime cutime cstime
    me, total = os.getpid(), 0.0
    for pid, seconds in cpu.items():
        p = parent.get(pid, 0)
        while p > 1 and p != me:
            p = parent.get(p, 0)
        if p == me:
            total += seconds
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def _now() -> tuple[float, float, float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.monotonic(), me.ru_utime + me.ru_stime,
            kids.ru_utime + kids.ru_stime + _descendants_cpu(), time.time())


_start: tuple[float, float, float, float] | None = None
_last: tuple[float, float, float, float] | None = None


def _module(item: pytest.Item | None) -> str | None:
    return None if item is None else item.nodeid.split("::")[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    # A module's tests run one after another on one worker (--dist loadscope): measured
    # from its first test's start to the end of its last (module fixtures' teardown
    # included), so the walk of /proc runs twice a module, not twice a test.
    global _start, _last
    if _start is None:
        _start = _now()
    yield
    module = _module(item)
    assert module is not None
    row = _modules.setdefault(module, [0.0, 0.0, 0.0, 0, 0.0, 0.0])
    row[3] += 1
    if _module(nextitem) == module:
        return
    end, _last = _last or _now(), None
    for i in range(3):
        row[i] += end[i] - _start[i]
    # When it ran (wall clock, comparable across workers): the schedule shows which
    # worker finished last and what it ran alone meanwhile.
    row[4] = row[4] or _start[3]
    row[5] = end[3]
    _start = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    # The worker's last test: its module ends before the session's fixtures are torn
    # down. Closing the per-worker Chromium orphans its renderers (they leave this
    # process tree unreaped, taking their CPU with them: -16 s on ui/test_views once).
    global _last
    if nextitem is None:
        _last = _now()
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _modules:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"{worker}.json").write_text(json.dumps(_modules))


def _rows(folder: Path) -> dict[str, tuple[list[float], str]]:
    rows: dict[str, tuple[list[float], str]] = {}
    for f in sorted(folder.glob("*.json")):
        for module, row in json.loads(f.read_text()).items():
            rows[module] = (row, f.stem)
    return rows


def report(folder: Path = OUT, top: int = 40, *, by_wall: bool = False) -> str:
    rows = _rows(folder)
    total = sum(r[1] + r[2] for r, _ in rows.values()) or 1.0
    lines = [f"{len(rows)} modules, {total:.0f} s CPU (pytest + its descendants)",
             "   cpu   self  child    wall tests worker module"]
    def rank(kv: tuple[str, tuple[list[float], str]]) -> float:
        r = kv[1][0]
        return -r[0] if by_wall else -(r[1] + r[2])

    for module, (r, worker) in sorted(rows.items(), key=rank)[:top]:
        lines.append(f"{r[1] + r[2]:6.1f} {r[1]:6.1f} {r[2]:6.1f} {r[0]:7.1f} {int(r[3]):5d}"
                     f" {worker:6s} {module}")
    return "\n".join(lines)


def schedule(folder: Path = OUT, last: int = 6) -> str:
    """Per worker: its busy wall and CPU, when it finished, and its last modules (start
    and end in seconds from the first module's start): a worker finishing well after the
    others ran its last modules alone."""
    rows = [(r, w, m) for m, (r, w) in _rows(folder).items() if len(r) > 4]
    if not rows:
        return "no schedule (a run before modtime recorded start and end times)"
    t0 = min(r[4] for r, _, _ in rows)
    lines = []
    for worker in sorted({w for _, w, _ in rows}):
        mine = sorted((r for r in rows if r[1] == worker), key=lambda r: r[0][4])
        busy = sum(r[0] for r, _, _ in mine)
        cpu = sum(r[1] + r[2] for r, _, _ in mine)
        lines.append(f"{worker}: {len(mine)} modules, busy {busy:.0f} s, {cpu:.0f} s CPU, "
                     f"done at {mine[-1][0][5] - t0:.0f} s")
        for r, _, m in mine[-last:]:
            lines.append(f"  {r[4] - t0:6.0f} {r[5] - t0:6.0f} {r[1] + r[2]:6.1f} {m}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    where = Path(args[0]) if args else OUT
    if "--schedule" in sys.argv[1:]:
        print(schedule(where))
    else:
        print(report(where, by_wall="--wall" in sys.argv[1:]))
