"""The kill -9 campaign: commits (and gc / delete) killed at random points.

After every kill the registry must open, verify() clean, show no version that was not
fully recorded, have its branch head at the old or the new version, and take the next
commit. Delays are drawn (seeded) over the whole duration of an uninterrupted commit.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelvc.registry import Registry

from . import faultkit as fk

SEED = 20240917
MODEL = "net"
BRANCH = "main"
ROUNDS = 3  # fresh registries, so verify() stays cheap
KILLS_PER_ROUND = 11


@dataclass
class Campaign:
    root: Path
    rng: random.Random
    known: dict[str, str] = field(default_factory=dict)  # version id -> file sha256
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0
    kills: int = 0
    recorded_by_killed: int = 0

    @property
    def registry(self) -> Path:
        return self.root / "reg"

    def next_file(self) -> tuple[Path, str]:
        """Mostly small perturbations of the previous model (deltas); now and then a
        fresh model (full copies) or an unchanged one (dedup)."""
        self.step += 1
        kind = self.step % 6
        if not self.arrays or kind == 0:
            self.arrays = fk.tensors(self.rng.randrange(1 << 30), scale=2)
        elif kind != 3:
            self.arrays = fk.tensors(self.rng.randrange(1 << 30), self.arrays)
        path = self.root / "files" / f"m{self.step}.safetensors"
        return path, fk.write_model(path, self.arrays)

    def head(self, reg: Registry) -> str | None:
        row = reg._head_or_none(MODEL, BRANCH)
        return row.version_id if row else None


def _commit_child(c: Campaign, path: Path, barrier: Path) -> subprocess.Popen[str]:
    p = fk.spawn("commit", str(c.registry), str(path), MODEL, BRANCH, str(barrier))
    fk.wait_ready(p)
    return p


def _measure_commit(c: Campaign) -> float:
    """Seconds from releasing an uninterrupted commit child to its result line."""
    path, sha = c.next_file()
    barrier = c.root / f"barrier-{c.step}"
    p = _commit_child(c, path, barrier)
    t0 = time.monotonic()
    fk.release(barrier)
    assert p.stdout is not None
    line = p.stdout.readline()
    took = time.monotonic() - t0
    res = fk.finish(p)
    assert res.rc == 0, (line, res.err)
    c.known[json.loads(line)["id"]] = sha
    return took


def _check_versions(reg: Registry, c: Campaign, dest: Path, *, checkout: set[str]) -> None:
    """Every listed version is one we know (or `checkout`), whose manifest records the
    committed file; versions in `checkout` are rebuilt and compared bit for bit."""
    for v in reg.versions(MODEL):
        assert v.id in c.known, f"unknown version v{v.number} {v.id} is visible"
        files = reg.manifest(f"{MODEL}@{v.id}").files
        assert [f.sha256 for f in files] == [c.known[v.id]]
        if v.id in checkout:
            out = dest / v.id
            reg.checkout(f"{MODEL}@v{v.number}", out)
            (rebuilt,) = [p for p in out.rglob("*") if p.is_file()]
            assert fk.sha256(rebuilt) == c.known[v.id]
            shutil.rmtree(out)


@dataclass
class Attempt:
    path: Path
    sha: str
    barrier: Path
    proc: subprocess.Popen[str]


def _prepare(c: Campaign) -> Attempt:
    """Write the next model file and start its commit child (it waits for the barrier);
    started early so its interpreter start overlaps the checks of the previous kill."""
    path, sha = c.next_file()
    barrier = c.root / f"barrier-{c.step}"
    proc = fk.spawn("commit", str(c.registry), str(path), MODEL, BRANCH, str(barrier))
    return Attempt(path, sha, barrier, proc)


def _kill_commits(c: Campaign, kills: int, took: float) -> None:
    nxt = _prepare(c)
    for i in range(kills):
        cur = nxt
        fk.wait_ready(cur.proc)
        with Registry.open(c.registry) as reg:
            before_ids = {v.id for v in reg.versions(MODEL)}
            head_before = c.head(reg)
        fk.release(cur.barrier)
        time.sleep(c.rng.uniform(0, 1.2 * took))
        cur.proc.send_signal(signal.SIGKILL)
        cur.proc.communicate(timeout=30)
        c.kills += 1
        if i + 1 < kills:
            nxt = _prepare(c)
        _after_kill(c, cur, before_ids, head_before)


def _after_kill(c: Campaign, cur: Attempt, before_ids: set[str], head_before: str | None
                ) -> None:
    with Registry.open(c.registry) as reg:
        rep = reg.verify()
        assert rep.ok, rep.to_json()
        ids = {v.id for v in reg.versions(MODEL)}
        new = ids - before_ids
        assert before_ids <= ids, "a recorded version vanished"
        assert len(new) <= 1, f"one killed commit recorded {len(new)} versions"
        head = c.head(reg)
        if new:  # the commit's transaction made it: version and head move together
            (nid,) = new
            c.known[nid] = cur.sha
            c.recorded_by_killed += 1
            assert head == nid
        else:
            assert head == head_before
        _check_versions(reg, c, c.root / "co", checkout=new | ({head} if head else set()))
        # The next commit works and moves the head.
        v = reg.commit(cur.path, model=MODEL, branch=BRANCH, message="after kill")
        c.known[v.id] = cur.sha
        assert c.head(reg) == v.id
        assert v.parents == ([head] if head else [])


def _kill_child(c: Campaign, argv: list[str], delay: float) -> int:
    p = fk.spawn(*argv)
    fk.wait_ready(p)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    p.communicate()
    c.kills += 1
    return p.returncode


def _duration(c: Campaign, argv: list[str]) -> float:
    """Time an uninterrupted run of a child on a scratch copy of the registry."""
    scratch = c.root / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(c.registry, scratch)
    argv = [argv[0], str(scratch), *argv[2:]]
    p = fk.spawn(*argv)
    fk.wait_ready(p)
    t0 = time.monotonic()
    assert p.stdout is not None
    line = p.stdout.readline()
    took = time.monotonic() - t0
    res = fk.finish(p)
    assert res.rc == 0, (line, res.err)
    shutil.rmtree(scratch)
    return took


def _check_all(c: Campaign) -> None:
    with Registry.open(c.registry) as reg:
        rep = reg.verify()
        assert rep.ok, rep.to_json()
        live = {v.id for v in reg.versions(MODEL)}
        _check_versions(reg, c, c.root / "co", checkout=live)
        path, sha = c.next_file()
        v = reg.commit(path, model=MODEL, branch=BRANCH, message="after maintenance kill")
        c.known[v.id] = sha
        reg.checkout(f"{MODEL}@v{v.number}", c.root / "co-last")
        assert fk.sha256(c.root / "co-last" / path.name) == sha
        shutil.rmtree(c.root / "co-last")


def _maintenance_kills(c: Campaign) -> None:
    """Kill gc --apply and delete part way, then check everything still checks out."""
    # gc: kill part way (there is garbage: objects of killed commits, a deleted version).
    with Registry.open(c.registry) as reg:
        victim = reg.versions(MODEL)[-2]  # an old version no ref points at
        reg.delete(f"{MODEL}@v{victim.number}")
        del c.known[victim.id]
    gc_argv = ["gc", str(c.registry)]
    took = _duration(c, gc_argv)
    _kill_child(c, gc_argv, c.rng.uniform(0, 1.2 * took))
    _check_all(c)
    # delete: a middle version that later versions are stored as deltas against.
    with Registry.open(c.registry) as reg:
        vs = reg.versions(MODEL)
        victim = vs[len(vs) // 2]
    del_argv = ["delete", str(c.registry), f"{MODEL}@v{victim.number}"]
    took = _duration(c, del_argv)
    _kill_child(c, del_argv, c.rng.uniform(0, 1.2 * took))
    with Registry.open(c.registry) as reg:
        if victim.id not in {v.id for v in reg.versions(MODEL)}:
            del c.known[victim.id]
    _check_all(c)
    # And a gc after all that removes garbage without breaking anything.
    with Registry.open(c.registry) as reg:
        reg.gc(dry_run=False, grace_seconds=0)
    _check_all(c)


def test_kill9_campaign(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    total_kills = recorded = 0
    tooks: list[float] = []
    t_start = time.monotonic()
    for r in range(ROUNDS):
        c = Campaign(tmp_path / f"round{r}", rng)
        c.root.mkdir()
        Registry.init(c.registry).close()
        took = max(_measure_commit(c), _measure_commit(c))
        tooks.append(took)
        _kill_commits(c, KILLS_PER_ROUND, took)
        if r < 2:
            _maintenance_kills(c)
        total_kills += c.kills
        recorded += c.recorded_by_killed
    elapsed = time.monotonic() - t_start
    print(f"kill -9 campaign: {total_kills} kills, {recorded} killed commits were "
          f"recorded, commit takes {', '.join(f'{t:.2f}' for t in tooks)} s, "
          f"campaign {elapsed:.1f} s")
    assert total_kills >= 30
    # Spread check: some kills hit before the commit was recorded, some after.
    assert 0 < recorded < ROUNDS * KILLS_PER_ROUND, (recorded, elapsed)


def test_kill9_commits_with_postgres_metadata(tmp_path: Path, pg_url: str) -> None:
    """A shorter campaign whose metadata lives on PostgreSQL: a killed client's open
    transaction is rolled back by the server, and nothing half-recorded shows."""
    c = Campaign(tmp_path, random.Random(SEED + 1))
    Registry.init(c.registry, meta_url=pg_url).close()
    took = max(_measure_commit(c), _measure_commit(c))
    _kill_commits(c, 8, took)
    _check_all(c)
    assert c.kills == 8
