"""Real concurrency: threads (and processes) racing to commit on one branch."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from meta_helpers import Backend, commit_until_accepted, new_version

from modelvc.errors import RefMoved
from modelvc.meta.store import MetaStore

WORKERS = 6
EACH = 4


def check_history(meta: MetaStore, total: int) -> None:
    versions = meta.list_versions("m")
    assert sorted(v.number for v in versions) == list(range(1, total + 1))
    moves = meta.ref_history("m", "main")
    assert len(moves) == total
    # Every move starts where the previous one ended: no lost update.
    assert moves[0].old is None and moves[0].action == "create"
    for prev, cur in itertools.pairwise(moves):
        assert cur.old == prev.new
    assert meta.get_ref("m", "main").version_id == moves[-1].new
    assert meta.get_ref("m", "main").revision == total
    # Each version was committed on top of the head it read.
    by_id = {v.id: v for v in versions}
    for m in moves:
        assert by_id[m.new].parents == ([m.old] if m.old else [])
    # Numbers follow the branch order (allocated inside the same transaction).
    assert [by_id[m.new].number for m in moves] == list(range(1, total + 1))


def test_threads_commit_without_lost_updates(meta: MetaStore, backend: Backend) -> None:
    meta.ensure_model("m")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [
            pool.submit(commit_until_accepted, backend.url, "m", w, EACH) for w in range(WORKERS)
        ]
        lost = sum(f.result() for f in futures)
    check_history(meta, WORKERS * EACH)
    print(f"{backend.kind}: {lost} lost races retried")


def test_processes_commit_without_lost_updates(meta: MetaStore, backend: Backend) -> None:
    meta.ensure_model("m")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        futures = [pool.submit(commit_until_accepted, backend.url, "m", w, EACH) for w in range(4)]
        for f in futures:
            f.result()
    check_history(meta, 4 * EACH)


def test_one_cas_winner(meta: MetaStore) -> None:
    meta.ensure_model("m")
    base = new_version("m", "base")
    meta.insert_version(base, branch="main", expected_head=None, create_branch=True, actor="a")
    cands = [new_version("m", i, parents=[base.id]) for i in range(WORKERS)]
    for v in cands:
        meta.insert_version(v, branch=None, expected_head=None, create_branch=False, actor="a")
    barrier = threading.Barrier(WORKERS)

    def promote(vid: str) -> bool:
        barrier.wait()
        try:
            meta.set_ref("m", "main", "branch", expected=base.id, new=vid, actor="x",
                         action="force")  # fmt: skip
            return True
        except RefMoved:
            return False

    with ThreadPoolExecutor(WORKERS) as pool:
        wins = list(pool.map(promote, [v.id for v in cands]))
    assert wins.count(True) == 1
    assert len(meta.ref_history("m", "main")) == 2


@pytest.mark.parametrize("n", [WORKERS])
def test_ensure_model_race(meta: MetaStore, n: int) -> None:
    barrier = threading.Barrier(n)

    def make(_: int) -> int:
        barrier.wait()
        return meta.ensure_model("racy").id

    with ThreadPoolExecutor(n) as pool:
        ids = set(pool.map(make, range(n)))
    assert len(ids) == 1 and [m.name for m in meta.list_models()] == ["racy"]
