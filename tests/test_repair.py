"""`modelvc verify --repair` (repair.py): a registry written before
storage.presume_stored holds a delta whose reference the store keeps as a blob (a raw
file's encoding of the same bytes); verify names it, repair re-encodes it whole from
bytes that still decode, audited, and says what it cannot rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.registry import Registry
from modelvc.storage import ObjectIO
from tests.test_storage import in_order


def old_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """As the writer before presume_stored wrote it: v1 stores X as a raw file (a blob);
    v2 holds X as tensor t1; v3 holds X as t0 (presumed new in its batch: held as a
    tensor) and t1 fine-tuned, encoded as a delta against that held X, which the store
    never kept (it has the blob). The folders committed, in order."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(2048).view(np.float64)
    x = rng.standard_normal(12288)
    y = x + 1e-6 * rng.standard_normal(x.size)
    srcs = [tmp_path / f"src{i}" for i in range(3)]
    for s in srcs:
        s.mkdir()
    (srcs[0] / "w0.bin.raw").write_bytes(p0.tobytes())
    (srcs[0] / "w1.bin.raw").write_bytes(x.tobytes())
    save_file({"t0": p0, "t1": x}, str(srcs[1] / "model.safetensors"))
    save_file({"t0": x, "t1": y}, str(srcs[2] / "model.safetensors"))
    with monkeypatch.context() as m:
        m.setattr(ObjectIO, "presume_stored", lambda self, ids: None)  # the old writer
        with Registry.init(tmp_path / "repo") as reg:
            in_order(reg)
            for s in srcs:
                reg.commit(s, model="a", message=s.name)
    return srcs


def test_repair_rebuilds_a_delta_against_a_reference_stored_as_a_blob(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "fixer")
    srcs = old_registry(tmp_path, monkeypatch)
    with Registry.open(tmp_path / "repo") as reg:
        found = reg.verify()
        (bad, why), = found.corrupt.items()
        assert "is a blob, not a tensor object" in why
        assert [v.split()[0] for v in found.broken_versions] == ["a@v3"]
        seen: list[str] = []
        out = reg.repair(progress=lambda phase, done, total: seen.append(phase))
        assert list(out.repaired) == [bad] and not out.unrepairable, out
        assert out.ok and out.after.ok and not out.after.broken_versions
        assert {"verify", "repair", "verify again"} <= set(seen)
        (entry,) = reg.audit(action="repair")
        assert entry.actor == "fixer" and entry.after["repaired"] == [bad]
    with Registry.open(tmp_path / "repo") as fresh:  # nothing cached
        assert fresh.verify().ok
        for n, src in enumerate(srcs, 1):
            fresh.checkout(f"a@v{n}", tmp_path / f"out{n}")
            for f in src.iterdir():
                assert (tmp_path / f"out{n}" / f.name).read_bytes() == f.read_bytes()
        assert fresh.repair().repaired == {}  # nothing left to do
        assert len(fresh.audit(action="repair")) == 1  # and nothing recorded


def test_repair_names_what_it_cannot_rebuild_from_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_registry(tmp_path, monkeypatch)
    # The blob the delta needs is damaged too: its bytes no longer decode to its id.
    with Registry.open(tmp_path / "repo") as reg:
        (bad, _), = reg.verify().corrupt.items()
        ref = reg._io.header(bad).ref
        assert ref is not None
        data = bytearray(reg._store.get(ref))
        data[-1] ^= 0xFF
        reg._store.replace(ref, bytes(data))
    run = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                          str(tmp_path / "repo"), "verify", "--repair", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 6, run.stderr
    doc = json.loads(run.stdout)
    assert not doc["ok"] and doc["repaired"] == {}
    assert bad in doc["unrepairable"], doc
    assert [v.split()[0] for v in doc["broken_versions"]] == ["a@v1", "a@v2", "a@v3"], doc
    assert "commit its files again" in doc["hint"]
    human = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                            str(tmp_path / "repo"), "verify", "--repair"],
                           capture_output=True, text=True, timeout=300)
    assert human.returncode == 6
    assert f"cannot repair {bad[:16]}" in human.stdout, human.stdout
    assert "hint: commit its files again" in human.stderr, human.stderr


def test_only_an_admin_repairs_under_a_policy_naming_admins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelvc.errors import PermissionDenied
    from modelvc.gates.policy import parse_policy

    old_registry(tmp_path, monkeypatch)
    with Registry.open(tmp_path / "repo") as reg:
        reg._governance.apply_policy(parse_policy(
            "version: 1\nroles:\n  admin: [alice]\n", "policy.yaml"), "alice")
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            reg.repair(actor="mallory")
        assert not reg.verify().ok  # refused: nothing rewritten
        assert reg.audit(action="repair") == []
        out = reg.repair(actor="alice")
        assert out.ok and len(out.repaired) == 1
        assert [e.actor for e in reg.audit(action="repair")] == ["alice"]


def _damaged_pack(tmp_path: Path) -> tuple[Path, Path]:
    """A registry whose one version's pack has a byte flipped inside a tensor; its
    source folder and the registry."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    save_file({"w": rng.standard_normal((64, 64)).astype(np.float32),
               "b": rng.standard_normal(300).astype(np.float32)},
              str(src / "model.safetensors"))
    (src / "config.json").write_text('{"layers": 1}')
    with Registry.init(tmp_path / "repo") as reg:
        reg.commit(src, model="net")
    (pack,) = (tmp_path / "repo" / ".modelvc" / "objects" / "packs").iterdir()
    pack.chmod(0o644)
    data = bytearray(pack.read_bytes())
    data[5000] ^= 0xFF  # inside the 16 KiB tensor's planes
    pack.write_bytes(bytes(data))
    return src, tmp_path / "repo"


def _same_files(src: Path, out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name


def test_a_damaged_object_is_moved_aside_and_the_next_commit_stores_it_afresh(
        tmp_path: Path) -> None:
    src, repo = _damaged_pack(tmp_path)
    with Registry.open(repo) as reg:
        (bad, why), = reg.verify().corrupt.items()
        assert "does not match its id" in why
        damaged = reg._store.get(bad)
        out = reg.repair()
        assert not out.ok and list(out.moved_aside) == [bad] and not out.repaired
        assert Path(out.moved_aside[bad]).read_bytes() == damaged  # nothing lost
        assert "moved aside" in out.after.corrupt[bad]
        assert [v.split()[0] for v in out.after.broken_versions] == ["net@v1"]
        (entry,) = reg.audit(action="repair")
        assert entry.after["moved_aside"] == [bad]
        # The hint's advice: commit the files again (here to the broken version's own
        # model, on top of it). The commit stores the object afresh, not dedup'd.
        reg.commit(src, model="net")
    with Registry.open(repo) as fresh:  # nothing cached
        assert fresh.verify().ok
        for ref in ("net@v1", "net@v2"):  # the broken version reads again too
            fresh.checkout(ref, tmp_path / ref)
            _same_files(src, tmp_path / ref)
        (row,) = fresh._meta.get_objects([bad]).values()
        assert row.codec != "aside"  # the new writer's encoding


def test_a_version_deleted_instead_leaves_verify_clean_after_gc(tmp_path: Path) -> None:
    src, repo = _damaged_pack(tmp_path)
    with Registry.open(repo) as reg:
        (bad, _), = reg.repair().moved_aside.items()
        reg.commit(src / "config.json", model="other")  # some version to keep
        reg.delete_ref("net", "main", reason="its only version is damaged")
        reg.delete("net@v1", reason="its files are gone")
        assert not reg.verify().ok  # the moved-aside object's row is still recorded
        reg.gc(dry_run=False, grace_seconds=0)
        assert reg.verify().ok
        assert bad not in reg._meta.get_objects([bad])


def test_the_cli_hints_at_repair_and_says_what_it_moved(tmp_path: Path) -> None:
    src, repo = _damaged_pack(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                               str(repo), *args], capture_output=True, text=True, timeout=300)

    first = cli("verify")
    assert first.returncode == 6 and "modelvc verify --repair" in first.stderr
    fixed = cli("verify", "--repair")
    assert fixed.returncode == 6 and "moved aside" in fixed.stdout, fixed.stdout
    assert "commit its files again" in fixed.stderr
    assert cli("commit", str(src), "--model", "net").returncode == 0
    assert cli("checkout", "net@v2", str(tmp_path / "out")).returncode == 0
    _same_files(src, tmp_path / "out")
    assert cli("verify").returncode == 0
