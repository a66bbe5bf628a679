"""Where a suite run's time goes, per test module: wall, CPU of the pytest process, CPU of
the subprocesses it waited for (servers, CLI calls, side venvs).

    python -m pytest -p tests.services.modtime -n 3 --dist loadscope --no-loadscope-reorder
    python -m tests.services.modtime            # the table, most CPU first
    python -m tests.services.modtime --wall     # longest wall first (LONG_FIRST's order)

CPU is what to compare on a busy machine (wall grows with the load). Each xdist worker
writes its own file into MODELVC_MODTIME_DIR (default /tmp/modelvc-modtime); a
module's module-scoped fixtures count with its last test, the children of a zygote
(tests/faults/zygote.py: servers, fault children) when the zygote reaps them. Session
fixtures count with the worker's last test; processes nobody waited for are not counted.
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


def _now() -> tuple[float, float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Servers and fault children forked from a zygote (tests/faults/zygote.py) are the
    # zygote's children: their CPU, as the zygote reaps them.
    zygote = sys.modules.get("tests.faults.zygote")
    forked = zygote.children_cpu() if zygote is not None else 0.0
    return time.monotonic(), me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime + forked


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    before = _now()
    yield
    after = _now()
    row = _modules.setdefault(item.nodeid.split("::")[0], [0.0, 0.0, 0.0, 0])
    for i in range(3):
        row[i] += after[i] - before[i]
    row[3] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _modules:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"{worker}.json").write_text(json.dumps(_modules))


def report(folder: Path = OUT, top: int = 40, *, by_wall: bool = False) -> str:
    rows: dict[str, tuple[list[float], str]] = {}
    for f in sorted(folder.glob("*.json")):
        for module, row in json.loads(f.read_text()).items():
            rows[module] = (row, f.stem)
    total = sum(r[1] + r[2] for r, _ in rows.values()) or 1.0
    lines = [f"{len(rows)} modules, {total:.0f} s CPU (pytest + waited-for subprocesses)",
             "   cpu   self  child    wall tests worker module"]
    def rank(kv: tuple[str, tuple[list[float], str]]) -> float:
        r = kv[1][0]
        return -r[0] if by_wall else -(r[1] + r[2])

    for module, (r, worker) in sorted(rows.items(), key=rank)[:top]:
        lines.append(f"{r[1] + r[2]:6.1f} {r[1]:6.1f} {r[2]:6.1f} {r[0]:7.1f} {int(r[3]):5d}"
                     f" {worker:6s} {module}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--wall"]
    print(report(Path(args[0]) if args else OUT, by_wall="--wall" in sys.argv[1:]))
