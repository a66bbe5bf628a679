"""LocalStore and atomic_write on a real filesystem: crashes, full disks, read-only mounts.

ENOSPC and EROFS come from real tiny tmpfs mounts (the tests run as root); where
mounting is not permitted they fall back to an injected OSError from os.fsync.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.atomic import atomic_write, atomic_writer, fsync_dir
from modelvc.errors import DiskFull, ObjectNotFound, StorageError
from modelvc.objects import LocalStore

KEY = "ab" + "cd" * 31
SRC = str(Path(__file__).resolve().parents[2] / "src")


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


def test_layout_and_read_only(local: LocalStore) -> None:
    local.put(KEY, b"data")
    path = local.root / "ab" / KEY[2:]
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    local.replace(KEY, b"new")  # over a read-only file: os.replace needs only the folder
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    old = time.time() - 3600
    os.utime(path, (old, old))
    local.touch(KEY)
    assert path.stat().st_mtime > old + 3000


def test_crash_leftover_is_invisible_and_cleaned(local: LocalStore) -> None:
    local.put(KEY, b"whole")
    other = "ab" + "ef" * 31
    leftover = local.root / "ab" / f".tmp-99999-{'0' * 16}"
    leftover.write_bytes(b"partial")  # what a writer killed mid-put leaves
    assert [i.key for i in local.list()] == [KEY]
    assert not local.has(other)
    with pytest.raises(ObjectNotFound):
        local.get(other)
    assert local.cleanup_temp(older_than_seconds=3600) == 0  # could be a live writer
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert local.cleanup_temp(older_than_seconds=3600) == 1
    assert not leftover.exists()
    assert local.get(KEY) == b"whole"


def test_kill_9_mid_write_leaves_only_a_temp_file(local: LocalStore) -> None:
    writer = f"""
import sys, time
sys.path.insert(0, {SRC!r})
from modelvc.objects import LocalStore
def chunks():
    for _ in range(1000):
        yield b"x" * 65536
        time.sleep(0.01)
class Slow:
    def __init__(self): self.it = chunks()
    def read(self, n=-1): return next(self.it, b"")
LocalStore({str(local.root)!r}).put_file({KEY!r}, Slow())
"""
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        deadline = time.monotonic() + 20
        while not any(p.stat().st_size > 0 for p in temp_files(local.root)):
            assert proc.poll() is None and time.monotonic() < deadline, "writer never started"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(temp_files(local.root)) == 1
    assert not local.has(KEY)
    assert list(local.list()) == []
    assert local.cleanup_temp(older_than_seconds=0) == 1
    assert temp_files(local.root) == []


def test_processes_writing_one_key_all_succeed(local: LocalStore) -> None:
    data = os.urandom(1 << 20)
    (local.root.parent / "data").write_bytes(data)
    writer = f"""
import sys
sys.path.insert(0, {SRC!r})
from modelvc.objects import LocalStore
s = LocalStore({str(local.root)!r})
with open({str(local.root.parent / "data")!r}, "rb") as f:
    d = f.read()
for _ in range(20):
    s.replace({KEY!r}, d)  # overwrite on purpose: the rename race is the point
"""
    procs = [subprocess.Popen([sys.executable, "-c", writer]) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    assert local.get(KEY) == data
    assert temp_files(local.root) == []


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Path | None]:
    """A 1 MiB tmpfs, or None when this user may not mount."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full(
    tiny_mount: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore((tiny_mount or tmp_path) / "objects")
    if tiny_mount is None:
        _fail_fsync(monkeypatch, errno.ENOSPC)
    with pytest.raises(DiskFull) as err:
        store.put(KEY, os.urandom(2 << 20))
    assert isinstance(err.value.__cause__, OSError)
    assert err.value.__cause__.errno == errno.ENOSPC
    assert temp_files(store.root) == []  # the partial temp file is gone
    assert not store.has(KEY)
    monkeypatch.undo()
    assert store.put(KEY, b"small fits")  # and the store still works


def test_read_only_filesystem(
    tiny_mount: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tiny_mount or tmp_path
    store = LocalStore(root / "objects")
    store.put(KEY, b"before")
    if tiny_mount is not None:
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_mount)], check=True)
    else:
        _fail_fsync(monkeypatch, errno.EROFS)
    try:
        with pytest.raises(StorageError) as err:
            store.put("cd" * 32, b"x")
        assert not isinstance(err.value, DiskFull)
        assert err.value.hint and "read-only" in err.value.hint
        assert store.get(KEY) == b"before"  # reads still work
    finally:
        if tiny_mount is not None:
            subprocess.run(["mount", "-o", "remount,rw", str(tiny_mount)], check=True)


def test_atomic_write_removes_temp_on_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old", mode=None)

    def chunks() -> Iterator[bytes]:
        yield b"new-part"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, chunks())
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []

    with pytest.raises(KeyError), atomic_writer(target) as f:
        f.write(b"half")
        raise KeyError("boom")
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_atomic_write_modes(tmp_path: Path) -> None:
    atomic_write(tmp_path / "ro", [b"a", b"b"])
    assert (tmp_path / "ro").read_bytes() == b"ab"
    assert stat.S_IMODE((tmp_path / "ro").stat().st_mode) == 0o444
    atomic_write(tmp_path / "rw", b"x", mode=0o644, fsync=False)
    assert stat.S_IMODE((tmp_path / "rw").stat().st_mode) == 0o644
    fsync_dir(tmp_path)


def test_missing_root_reads_as_empty(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nope")
    assert list(store.list()) == []
    assert store.cleanup_temp(0) == 0
    assert not store.has(KEY)


def test_list_skips_stray_names(local: LocalStore) -> None:
    local.put(KEY, b"x")
    (local.root / "ab" / "README").write_bytes(b"not an object")
    (local.root / "zz").mkdir()
    (local.root / "zz" / "cdef0123").write_bytes(b"not a fan-out folder")
    assert [i.key for i in local.list()] == [KEY]
