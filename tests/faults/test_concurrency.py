"""Processes racing on one branch and on one channel: nothing is lost.

Children are started first, wait for a barrier file, and are released together, so
they all read the same branch head and all but one lose the first compare-and-swap.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from modelvc.meta.api import RefMove
from modelvc.registry import Registry

from . import faultkit as fk

MODEL = "racer"
BRANCH = "dev"


def _files(root: Path, n: int, seed: int) -> list[tuple[Path, str]]:
    out = []
    for i in range(n):
        path = root / f"w{seed}-{i}" / "model.safetensors"
        out.append((path, fk.write_model(path, fk.tensors(seed * 100 + i))))
    return out


def _race_commits(reg_path: Path, files: list[tuple[Path, str]], barrier: Path) -> list[str]:
    results = fk.run_children(
        [["commit", str(reg_path), str(p), MODEL, BRANCH, str(barrier)] for p, _ in files],
        barrier,
    )
    for r in results:
        assert r.rc == 0, (r.out, r.err)
    return [str(r.out["id"]) for r in results]


def _chain(moves: list[RefMove]) -> None:
    """Every move starts where the previous one ended."""
    assert moves[0].old is None
    for prev, cur in itertools.pairwise(moves):
        assert cur.old == prev.new, (prev, cur)


@pytest.mark.parametrize("writers", [2, 4])
def test_processes_commit_to_one_branch(registry: Path, tmp_path: Path, writers: int) -> None:
    expected: dict[str, str] = {}  # version id -> file sha256
    # Round 1 races to create the branch; round 2 races on an existing head.
    for rnd in range(2):
        files = _files(tmp_path / "files", writers, rnd)
        ids = _race_commits(registry, files, tmp_path / f"barrier{rnd}")
        expected.update({vid: sha for vid, (_, sha) in zip(ids, files, strict=True)})

    total = 2 * writers
    with Registry.open(registry) as reg:
        versions = reg.versions(MODEL)
        assert {v.id for v in versions} == set(expected)
        assert sorted(v.number for v in versions) == list(range(1, total + 1))
        moves = reg.history(MODEL, BRANCH)
        assert len(moves) == total, moves
        assert sorted(m.new or "" for m in moves) == sorted(expected)
        _chain(moves)
        # Commits that lost the race were re-parented onto the moved head: linear history.
        by_id = {v.id: v for v in versions}
        for m in moves:
            assert by_id[m.new or ""].parents == ([m.old] if m.old else [])
        assert [by_id[m.new or ""].number for m in moves] == list(range(1, total + 1))
        head = reg.resolve(f"{MODEL}@{BRANCH}")
        assert head.id == moves[-1].new
        assert {v.id for v in reg.log(f"{MODEL}@{BRANCH}")} == set(expected)
        rep = reg.verify()
        assert rep.ok, rep.to_json()
        for v in versions:
            dest = tmp_path / "co" / str(v.number)
            reg.checkout(f"{MODEL}@v{v.number}", dest)
            assert fk.sha256(dest / "model.safetensors") == expected[v.id]


def _race_promotes(registry: Path, tmp_path: Path) -> list[list[fk.ChildResult]]:
    """Commit v1..v4, then race v1 against v2 onto a new channel, v3 against v4 onto it."""
    with Registry.open(registry) as reg:
        for path, _ in _files(tmp_path / "files", 4, 7):
            reg.commit(path, model=MODEL, branch=BRANCH)
    rounds = []
    for rnd, pair in enumerate([("v1", "v2"), ("v3", "v4")]):
        barrier = tmp_path / f"barrier{rnd}"
        rounds.append(fk.run_children(
            [["promote", str(registry), f"{MODEL}@{v}", "production", str(barrier)]
             for v in pair], barrier))
    return rounds


def test_concurrent_promotes_never_silently_lost(registry: Path, tmp_path: Path) -> None:
    """Each promote either is in the channel history or failed with a clear conflict."""
    rounds = _race_promotes(registry, tmp_path)
    with Registry.open(registry) as reg:
        moves = reg.history(MODEL, "production")
        recorded = [m.new for m in moves]
        _chain(moves)
        for results in rounds:
            assert any(r.rc == 0 for r in results)
            for r in results:
                if r.rc == 0:
                    assert r.out["version"] in recorded
                else:
                    assert r.rc == 5, (r.out, r.err)
                    assert r.out["error"] in ("RefMoved", "AlreadyExists")
        assert reg.resolve(f"{MODEL}@production").id == moves[-1].new


def test_concurrent_promotes_both_recorded(registry: Path, tmp_path: Path) -> None:
    rounds = _race_promotes(registry, tmp_path)
    for results in rounds:
        for r in results:
            assert r.rc == 0, f"a concurrent promote failed: {r.out} {r.err}"
    with Registry.open(registry) as reg:
        moves = reg.history(MODEL, "production")
        wanted = {reg.resolve(f"{MODEL}@v{n}").id for n in range(1, 5)}
        assert {m.new for m in moves} == wanted
        assert len(moves) == 4
        _chain(moves)
        assert reg.resolve(f"{MODEL}@production").id == moves[-1].new
