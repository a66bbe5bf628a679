"""A gateway's own work folder (checkouts, kept graphs) in the temporary directory, and
the removal of those whose gateway died without removing its own (kill -9, a crash, a
power cut): each gateway holds an exclusive lock on `.lock` in its folder for its life,
and the kernel drops the lock with the process, however it ends. A folder whose lock
can be taken belongs to no running gateway, on this host or any other sharing the
directory (flock is not tied to a pid, which another pid namespace may reuse)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("modelvc.serving")

PREFIX = "modelvc-serve-"
LOCK = ".lock"


class Workdir:
    """A fresh work folder, locked until `remove` (or until this process ends)."""

    def __init__(self, parent: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        # Locked before it has its name: a sweeper never finds `.lock` unlocked in a
        # folder whose gateway is still starting.
        partial = self.path / f"{LOCK}.partial"
        self._fd: int | None = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        partial.rename(self.path / LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sweep(parent: str | None = None) -> list[Path]:
    """Remove the work folders of gateways that are gone; the folders removed. Folders
    without a `.lock` (an older modelvc's, or one being created) are left alone."""
    removed = []
    root = Path(parent or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                fd = os.open(Path(entry.path) / LOCK, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its gateway runs
                os.close(fd)
                continue
            try:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
            finally:
                os.close(fd)
    if removed:
        log.info("removed %d work folder(s) of gateways that are gone", len(removed))
    return removed
