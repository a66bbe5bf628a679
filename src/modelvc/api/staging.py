"""Checkpoint folders staged for a background commit (`Run.submit(folder=...)`).

Staging hard-links each file of the folder a framework saved into
STAGING/<run>-<seq>/files/ (a copy where a link cannot be made: another file system),
next to pending.json, the commit it waits for. That costs the training loop a few
metadata writes, not a read of the checkpoint; and since a framework writes a new
folder per checkpoint and deletes old ones (the Trainer's `save_total_limit`), the links
keep the saved bytes until the commit has read them. The entry appears by one rename,
complete or not at all, and is removed once its version is recorded: an entry left
behind is a checkpoint whose commit never finished (the process stopped, or the commit
failed). `pending(root)` lists them and `recover(reg, root)` commits them in order
(`modelvc staging list / recover / drop`, cli/staging_cmds.py).

A file rewritten in place after it was staged (the same inode: e.g. `save_pretrained`
into the folder of the previous checkpoint) is caught by its size and mtime before and
after the commit reads it, and the commit raises rather than record other bytes than
the step's.

STAGING is the registry's folder `staging/` (an embedded registry on the folder's file
system), else `.modelvc-staging/` beside the checkpoint folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelvcError, NotFound, PathNotFound, UsageError

if TYPE_CHECKING:
    from ..records import Version
    from .protocol import RegistryAPI

PENDING = "pending.json"
TMP = ".tmp-"


class StagedChanged(ModelvcError):
    """A staged checkpoint file changed before its commit finished reading it."""

    exit_code = 1
    http_status = 409


@dataclass(frozen=True)
class Staged:
    """One staged checkpoint: its folder, the commit's keyword arguments, and the
    [size, mtime_ns] of each file as staged."""

    path: Path
    commit: dict[str, Any]
    stats: dict[str, list[int]]
    pid: int
    host: str
    created: float
    registry: str = ""  # the registry it is for (its folder or URL)

    @property
    def files(self) -> Path:
        return self.path / "files"

    @property
    def step(self) -> Any:
        return self.commit.get("metrics", {}).get("step")

    def alive(self) -> bool:
        """Whether another process that staged it still runs (its commit may be under
        way). This process's own entries count as stopped: recover them after the run."""
        if self.pid == os.getpid() and self.host == socket.gethostname():
            return False
        if self.host != socket.gethostname():
            return True  # cannot tell: treat as someone else's
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def root_for(reg: RegistryAPI, folder: Path) -> Path:
    """Where FOLDER's checkpoints are staged (see the module docstring)."""
    loc = reg.location
    if "://" not in loc:
        home = Path(loc)
        try:
            if home.is_dir() and home.stat().st_dev == folder.stat().st_dev:
                return home / "staging"
        except OSError:
            pass
    return folder.resolve().parent / ".modelvc-staging"


def stage(folder: Path, root: Path, name: str, commit: Mapping[str, Any],
          registry: str = "") -> Staged:
    """Link (or copy) FOLDER's files into ROOT/NAME with COMMIT (into REGISTRY, its
    location) recorded beside them."""
    if not folder.is_dir():
        raise PathNotFound(f"{folder} is not a checkpoint folder",
                           hint="pass the folder the framework saved the checkpoint in")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP}{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    files = tmp / "files"
    stats: dict[str, list[int]] = {}
    for src in sorted(folder.rglob("*")):
        if not src.is_file():
            continue
        rel = src.relative_to(folder).as_posix()
        dst = files / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst, follow_symlinks=True)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(src, dst)
        st = dst.stat()
        stats[rel] = [st.st_size, st.st_mtime_ns]
    if not stats:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"{folder} holds no files to commit")
    staged = Staged(root / name, dict(commit), stats, os.getpid(), socket.gethostname(),
                    time.time(), registry)
    (tmp / PENDING).write_text(json.dumps({
        "commit": staged.commit, "stats": stats, "pid": staged.pid, "host": staged.host,
        "created": staged.created, "registry": registry, "source": os.fspath(folder)}))
    os.replace(tmp, staged.path)  # the entry is complete, or absent
    return staged


def check_unchanged(staged: Staged) -> None:
    """Raise StagedChanged if a staged file is not as it was staged."""
    for rel, (size, mtime) in staged.stats.items():
        try:
            st = (staged.files / rel).stat()
        except FileNotFoundError as exc:
            raise StagedChanged(f"staged checkpoint file {rel} of step {staged.step} is gone "
                                f"from {staged.path}") from exc
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise StagedChanged(
                f"checkpoint file {rel} of step {staged.step} was rewritten in place after it "
                "was staged (something saved into the same folder again)",
                hint="save each checkpoint into a new folder (as the Trainer does), or "
                     "commit synchronously: run.commit(folder=...)")


def commit_staged(reg: RegistryAPI, staged: Staged) -> Version:
    """Commit STAGED, check its files did not change meanwhile, and remove it."""
    check_unchanged(staged)
    v = reg.commit(staged.files, **staged.commit)
    try:
        check_unchanged(staged)
    except StagedChanged as exc:
        raise StagedChanged(f"{exc.message}; version {v.model}@v{v.number} may hold the "
                            "new bytes", hint=exc.hint) from exc
    discard(staged)
    return v


def discard(staged: Staged) -> None:
    shutil.rmtree(staged.path, ignore_errors=True)


def pending(root: str | Path) -> list[Staged]:
    """The checkpoints staged under ROOT whose commit has not finished, oldest first."""
    root = Path(root)
    out: list[Staged] = []
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        if entry.name.startswith(TMP) or not (entry / PENDING).is_file():
            continue
        out.append(load(entry))
    return sorted(out, key=lambda s: (s.created, s.path.name))


def load(entry: Path) -> Staged:
    """The staged checkpoint in the folder ENTRY."""
    try:
        d = json.loads((entry / PENDING).read_text())
    except FileNotFoundError as exc:
        raise PathNotFound(f"{entry} is not a staged checkpoint (no {PENDING})",
                           hint="`modelvc staging list` shows the staged ones") from exc
    return Staged(entry, d["commit"], d["stats"], d["pid"], d["host"], d["created"],
                  d.get("registry", ""))


def recover(reg: RegistryAPI, root: str | Path) -> list[Version]:
    """Commit the checkpoints left staged under ROOT by processes that stopped, oldest
    first (each onto its branch's head), and remove them; clear half-staged leftovers."""
    root = Path(root)
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith(TMP):  # staging never finished: never acknowledged
                shutil.rmtree(entry, ignore_errors=True)
    out: list[Version] = []
    for s in pending(root):
        if s.registry and s.registry != reg.location:
            raise UsageError(f"{s.path} was staged for the registry {s.registry}, not "
                             f"{reg.location}", hint="recover it with that registry open")
        if s.alive():
            raise UsageError(f"{s.path} was staged by process {s.pid}, which still runs",
                             hint="let that run finish its commits, or stop it first")
        done = recorded(reg, s)
        if done is not None:  # the process stopped between the record and the cleanup
            discard(s)
            out.append(done)
            continue
        out.append(commit_staged(reg, s))
    return out


def recorded(reg: RegistryAPI, s: Staged) -> Version | None:
    """The version STAGED's commit already recorded, if it is its branch's head (the
    process stopped after recording it, before removing the entry), else None."""
    run = s.commit.get("lineage", {}).get("run")
    if not run or not s.commit.get("branch"):
        return None
    try:
        head = reg.resolve(f"{s.commit['model']}@{s.commit['branch']}")
    except NotFound:
        return None
    return head if head.lineage.get("run") == run else None


def left_behind(root: Path) -> str | None:
    """A sentence naming the checkpoints under ROOT staged by processes that stopped
    before committing them (None if there are none)."""
    stale = [s for s in pending(root) if not s.alive()]
    if not stale:
        return None
    names = ", ".join(f"{s.commit.get('model')}@{s.commit.get('branch')} step {s.step}"
                      for s in stale[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return (f"{len(stale)} checkpoint(s) staged under {root} were never committed (the "
            f"process stopped first): {names}{more}; commit them with `modelvc staging "
            f"recover {os.fspath(root)}` (or modelvc.api.staging.recover)")
