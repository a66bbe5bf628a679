"""Where commit and checkout time goes: run each phase alone under py-spy, count leaves.

The pool threads' stacks do not include Registry.commit/checkout, so the phases run in
separate processes instead of being told apart by stack:

    python bench/profile_storage.py commit WORK     # commit the sequence into WORK/registry
    python bench/profile_storage.py checkout WORK   # check every version out of WORK/registry
    python bench/profile_storage.py top OUT.txt     # leaf frames of a `py-spy -f raw` profile

    py-spy record -f raw --nonblocking -r 200 -o commit.txt -- \\
        python bench/profile_storage.py commit /tmp/prof
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune import build

import modelvc.storage as mstorage
from modelvc import Registry

MODEL = "minilm"
# Leaf functions where a thread waits for work or for another thread, not doing it.
IDLE = frozenset({"_worker", "wait", "_wait_for_tstate_lock", "select", "get", "acquire"})


def commit(work: Path, max_depth: int | None) -> None:
    if max_depth is not None:
        mstorage.MAX_CHAIN_DEPTH = max_depth
    root = work / "registry"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    versions = build(log=False)
    numbers: dict[str, int] = {}
    branch = {v.name: v.branch for v in versions}
    t0 = time.perf_counter()
    with Registry.init(root) as reg:
        for v in versions:
            fork = v.parent is not None and branch[v.parent] != v.branch
            parent = f"{MODEL}@v{numbers[v.parent]}" if fork and v.parent else None
            numbers[v.name] = reg.commit(v.folder, model=MODEL, branch=v.branch,
                                         parent=parent).number
    print(f"committed {len(versions)} versions in {time.perf_counter() - t0:.1f} s")


def checkout(work: Path, rounds: int) -> None:
    dest = work / "out"
    t0 = time.perf_counter()
    with Registry.open(work / "registry") as reg:
        versions = reg.versions(MODEL)
        for _ in range(rounds):
            for v in versions:
                shutil.rmtree(dest, ignore_errors=True)
                reg.checkout(f"{MODEL}@v{v.number}", dest)
    shutil.rmtree(dest, ignore_errors=True)
    print(f"{rounds} x {len(versions)} checkouts in {time.perf_counter() - t0:.1f} s")


def _function(frame: str) -> str:
    """'Class.method (pkg/file.py:12)' -> 'method'."""
    return frame.split(" (", 1)[0].rsplit(".", 1)[-1]


def top(path: Path, n: int, *, by_line: bool) -> None:
    """Leaf-frame sample counts of a py-spy raw (collapsed) profile, idle leaves dropped.

    By default lines of one function are summed; --by-line keeps them apart."""
    leaves: Counter[str] = Counter()
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if _function(leaf) in IDLE:
            idle += int(count)
            continue
        if not by_line:
            leaf = leaf.rsplit(":", 1)[0] + ")" if leaf.endswith(")") else leaf
        leaves[leaf] += int(count)
    busy = sum(leaves.values())
    print(f"{busy} busy samples ({idle} idle dropped)")
    for leaf, c in leaves.most_common(n):
        print(f"{100 * c / busy:5.1f}%  {leaf[:90]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("commit")
    c.add_argument("work", type=Path)
    c.add_argument("--max-depth", type=int)
    k = sub.add_parser("checkout")
    k.add_argument("work", type=Path)
    k.add_argument("--rounds", type=int, default=2)
    t = sub.add_parser("top")
    t.add_argument("profile", type=Path)
    t.add_argument("-n", type=int, default=25)
    t.add_argument("--by-line", action="store_true", help="one row per source line")
    a = ap.parse_args()
    if a.cmd == "commit":
        commit(a.work, a.max_depth)
    elif a.cmd == "checkout":
        checkout(a.work, a.rounds)
    else:
        top(a.profile, a.n, by_line=a.by_line)


if __name__ == "__main__":
    main()
