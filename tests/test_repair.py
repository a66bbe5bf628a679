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
