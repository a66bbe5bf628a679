"""A full disk: commit and checkout fail with DiskFull (exit 7), leave nothing half
done, and the registry works again once space is freed. Needs root for tmpfs mounts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelvc.errors import DiskFull
from modelvc.registry import Registry

from . import faultkit as fk

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

Mount = Callable[[Path, str], Path]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """mount(DIR, SIZE) mounts a fresh tmpfs of SIZE (e.g. '8m') on DIR; unmounted after."""
    mounted: list[Path] = []

    def mount(where: Path, size: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       check=True, capture_output=True)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _big_model(path: Path, scale: int) -> str:
    """Random float32 (barely compressible): about 1.45 MB per unit of scale."""
    return fk.write_model(path, fk.tensors(scale, scale=scale))


def _registry_and_model(tmp: Path) -> tuple[Path, Path]:
    """An empty registry (tmp/reg) and a model to commit to it (~2.9 MB, tmp/src)."""
    reg_dir = tmp / "reg"
    Registry.init(reg_dir).close()
    model = tmp / "src" / "m.safetensors"
    _big_model(model, 2)
    return reg_dir, model


def _used(root: Path) -> int:
    st = os.statvfs(root)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_commit_on_full_disk(tmpfs: Mount, tmp_path: Path) -> None:
    disk = tmpfs(tmp_path / "disk", "8m")
    Registry.init(disk).close()
    small, small_sha = tmp_path / "small" / "m.safetensors", ""
    small_sha = fk.write_model(small, fk.tensors(1))  # ~1.8 MB
    big = tmp_path / "big" / "m.safetensors"
    _big_model(big, 8)  # ~11.6 MB raw, more than the whole disk

    done = fk.cli(disk, "commit", str(small), "--model", "m")
    assert done.returncode == 0, done.stderr

    done = fk.cli(disk, "commit", str(big), "--model", "m")
    assert done.returncode == 7, (done.returncode, done.stdout, done.stderr)
    assert "no space left" in done.stderr
    assert "Traceback" not in done.stderr

    js = fk.cli(disk, "commit", str(big), "--model", "m", "--json")
    assert js.returncode == 7
    err = json.loads(js.stdout)
    assert err["error"] == "DiskFull" and err["message"]

    # Still full (or nearly): the registry opens, verifies, and recorded nothing new.
    with Registry.open(disk) as reg:
        assert [v.number for v in reg.versions("m")] == [1]
        rep = reg.verify()
        assert rep.ok, rep.to_json()
        assert reg.resolve("m@main").number == 1

    # Free the space the failed commits left behind, then commit again.
    gc = fk.cli(disk, "gc", "--apply", "--grace", "0")
    assert gc.returncode == 0, gc.stderr
    assert _used(disk) < 6 << 20
    with Registry.open(disk) as reg:
        v = reg.commit(fk_perturbed(tmp_path), model="m")
        assert v.number == 2 and v.parents == [reg.resolve("m@v1").id]
        rep = reg.verify()
        assert rep.ok, rep.to_json()
        out = tmp_path / "out"
        reg.checkout("m@v1", out)
        assert fk.sha256(out / "m.safetensors") == small_sha


def _says_what_to_do(stderr: str) -> None:
    assert "hint:" in stderr, stderr
    assert "free" in stderr or "gc" in stderr or "another destination" in stderr, stderr


def test_commit_disk_full_says_what_to_do(tmpfs: Mount, tmp_path: Path) -> None:
    disk = tmpfs(tmp_path / "disk", "4m")
    Registry.init(disk).close()
    big = tmp_path / "big" / "m.safetensors"
    _big_model(big, 5)
    done = fk.cli(disk, "commit", str(big), "--model", "m")
    assert done.returncode == 7, done.stderr
    _says_what_to_do(done.stderr)


def test_checkout_disk_full_says_what_to_do(tmpfs: Mount, tmp_path: Path) -> None:
    reg_dir, model = _registry_and_model(tmp_path)
    assert fk.cli(reg_dir, "commit", str(model), "--model", "m").returncode == 0
    dest = tmpfs(tmp_path / "dest", "1m")
    done = fk.cli(reg_dir, "checkout", "m@v1", str(dest))
    assert done.returncode == 7, done.stderr
    _says_what_to_do(done.stderr)


def fk_perturbed(tmp_path: Path) -> Path:
    path = tmp_path / "next" / "m.safetensors"
    fk.write_model(path, fk.tensors(2, fk.tensors(1)))
    return path


def test_checkout_into_full_disk(tmpfs: Mount, tmp_path: Path) -> None:
    reg_dir, model = _registry_and_model(tmp_path)
    with Registry.open(reg_dir) as reg:
        reg.commit(model, model="m")
        dest = tmpfs(tmp_path / "dest", "1m")
        with pytest.raises(DiskFull) as info:
            reg.checkout("m@v1", dest)
        assert "no space left" in str(info.value)
        assert sorted(p.name for p in dest.iterdir()) == [], "partial or temp file left"

        done = fk.cli(reg_dir, "checkout", "m@v1", str(dest / "sub"))
        assert done.returncode == 7, (done.stdout, done.stderr)
        assert "no space left" in done.stderr
        assert not (dest / "sub" / "m.safetensors").exists()
        leftovers = [p for p in dest.rglob("*") if p.is_file()]
        assert leftovers == []

        # With room it works, bit-exact.
        roomy = tmpfs(tmp_path / "roomy", "16m")
        reg.checkout("m@v1", roomy)
        assert fk.sha256(roomy / "m.safetensors") == fk.sha256(model)


def test_remote_checkout_into_full_disk(tmpfs: Mount, tmp_path: Path) -> None:
    """A checkout over HTTP writes its files as a local one does: a full disk is DiskFull
    (exit 7 with its hint), and no partial or temp file is left."""
    from modelvc.remote import RemoteRegistry
    from tests.services.server import ServerProcess, grant_token

    reg_dir, model = _registry_and_model(tmp_path)
    with Registry.open(reg_dir) as reg:
        reg.commit(model, model="m")
    token = grant_token(reg_dir)
    server = ServerProcess(reg_dir, tmp_path / "server.log").start()
    try:
        dest = tmpfs(tmp_path / "dest", "1m")
        with RemoteRegistry(server.url, token=token) as remote, \
                pytest.raises(DiskFull) as info:
            remote.checkout("m@v1", dest)
        assert "no space left" in str(info.value) and info.value.hint
        assert sorted(p.name for p in dest.iterdir()) == [], "partial or temp file left"
    finally:
        server.stop()
