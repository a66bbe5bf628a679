"""`modelvc du` and `modelvc gc` through the real CLI: what each version references,
the bytes no version needs (an interrupted commit's, a deleted version's), and what the
grace period keeps. In process (`fk.cli_here`) but for the commit it kills -9."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from modelvc.atomic import is_temp_name
from modelvc.registry import Registry
from tests.faults import faultkit as fk


def _random_model(path: Path, mb: int) -> int:
    """Incompressible float32 tensors (1 MB each): stored bytes ~ raw bytes."""
    rng = np.random.default_rng(7)
    save_file({f"t{i}": rng.standard_normal(1 << 18).astype(np.float32) for i in range(mb)},
              str(path))
    return path.stat().st_size


def _du(reg: Path, *args: str) -> dict[str, object]:
    done = fk.cli_here(reg, "du", *args, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert isinstance(out, dict)
    return out


def _object_files(reg: Path) -> int:
    """Whole object and pack files (not the temp file of one being written)."""
    return sum(1 for p in (reg / ".modelvc" / "objects").rglob("*")
               if p.is_file() and not is_temp_name(p.name))


def test_interrupted_commit_orphans_are_reported_and_the_rerun_references_them(
        tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry.init(reg).close()
    small = tmp_path / "small.safetensors"
    fk.write_model(small, fk.tensors(1))
    assert fk.cli_here(reg, "commit", str(small), "--model", "keep").returncode == 0
    big = tmp_path / "big.safetensors"
    raw = _random_model(big, 96)

    # kill -9 the commit once it has written some objects (it records nothing before
    # all of them are written: DESIGN invariant 1). Its 1 MB tensors go into packs of
    # ~32 MB, so the first new file is a third of the way through.
    before = _object_files(reg)
    proc = subprocess.Popen([*fk.modelvc_exe(), "--registry", str(reg), "commit", str(big),
                             "--model", "big"], env=fk.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _object_files(reg) < before + 1 and time.monotonic() < deadline:
        assert proc.poll() is None, "the commit ended before it could be interrupted"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Registry.open(reg) as r:
        assert r.models() == ["keep"]  # nothing recorded

    du = _du(reg)
    loose = du["unreferenced"]
    assert isinstance(loose, dict) and loose["objects"] >= 1 and loose["bytes"] > 1 << 19
    text = fk.cli_here(reg, "du").stdout
    assert "unreferenced:" in text and "modelvc gc" in text
    gc = fk.cli_here(reg, "gc")
    assert gc.returncode == 0, gc.stderr
    assert "kept" in gc.stdout and "written in the last 1 h" in gc.stdout, gc.stdout
    gc_js = json.loads(fk.cli_here(reg, "gc", "--json").stdout)
    assert gc_js["kept_young_bytes"] == loose["bytes"] and gc_js["would_remove"] == 0

    # The re-run reuses what the killed commit wrote: it adds little, but the version
    # still references (and du reports) all of its bytes.
    assert fk.cli_here(reg, "commit", str(big), "--model", "big").returncode == 0
    v = _du(reg, "big")["models"]["big"]["versions"][0]  # type: ignore[index]
    assert v["new"] < v["stored"]
    # The same file committed into a fresh registry: all of it is new there.
    fresh = tmp_path / "fresh"
    Registry.init(fresh).close()
    assert fk.cli_here(fresh, "commit", str(big), "--model", "big").returncode == 0
    w = _du(fresh, "big")["models"]["big"]["versions"][0]  # type: ignore[index]
    assert w["stored"] == w["new"]
    assert abs(v["stored"] - w["stored"]) < 1024  # manifests differ (time, id)
    assert 0.5 < v["stored"] / raw < 1.1
    assert _du(reg)["unreferenced"] == {"objects": 0, "bytes": 0}


def test_delete_says_what_gc_reclaims(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry.init(reg).close()
    a = tmp_path / "a.safetensors"
    fk.write_model(a, fk.tensors(1))
    b = tmp_path / "b.safetensors"
    fk.write_model(b, fk.tensors(2))
    for f in (a, b):
        assert fk.cli_here(reg, "commit", str(f), "--model", "m").returncode == 0
    done = fk.cli_here(reg, "delete", "m@v1")
    assert done.returncode == 0, done.stderr
    assert "grace period" in done.stdout and "--grace 0" in done.stdout
    loose = _du(reg)["unreferenced"]
    assert isinstance(loose, dict) and loose["objects"] > 0
    # As the message says: plain gc keeps them (young), --grace 0 reclaims them.
    kept = json.loads(fk.cli_here(reg, "gc", "--apply", "--json").stdout)
    assert kept["removed"] == 0 and kept["kept_young"] == loose["objects"]
    gone = json.loads(fk.cli_here(reg, "gc", "--apply", "--grace", "0", "--json").stdout)
    assert gone["removed"] == loose["objects"] and gone["bytes"] == loose["bytes"]
    assert _du(reg)["unreferenced"] == {"objects": 0, "bytes": 0}
