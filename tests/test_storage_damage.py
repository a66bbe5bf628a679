"""A stored object replaced by another's bytes (its child's: the header then names the
object itself as its delta reference) must be reported, naming the damaged object,
instead of walked forever. Each reader runs in its own process under an address-space
limit, so an unbounded walk fails the test with a MemoryError rather than taking the
machine's memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.conftest import write_model

LIMIT = 3 << 30  # bytes of address space for each reader process


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit, env={**os.environ, "MODELVC_AUTHOR": "t"})


@pytest.fixture
def looped(reg: Registry, tmp_path: Path) -> tuple[Path, str]:
    """A registry where v1's delta-referenced tensor object holds v2's bytes."""
    base = write_model(tmp_path / "v1.safetensors", 0)
    reg.commit(tmp_path / "v1.safetensors", model="m")
    write_model(tmp_path / "v2.safetensors", 1, base=base)
    reg.commit(tmp_path / "v2.safetensors", model="m")
    m2 = reg.manifest("m@v2")
    child = next(s.id for f in m2.files for s in f.tensors() if reg._io.header(s.id).ref)
    parent = reg._io.header(child).ref
    assert parent is not None
    reg._store.replace(parent, reg._store.get(child))
    return reg._layout.root.parent, parent


def test_verify_names_the_object_whose_chain_loops(looped: tuple[Path, str]) -> None:
    project, damaged = looped
    out = _run([sys.executable, "-m", "modelvc.cli.main", "verify", "--json"], project)
    assert out.returncode == 6, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert damaged in report["corrupt"]
    assert any(v.startswith("m@v2") for v in report["broken_versions"])


def test_checkout_refuses_a_looping_chain(looped: tuple[Path, str], tmp_path: Path) -> None:
    project, damaged = looped
    out = _run([sys.executable, "-m", "modelvc.cli.main", "checkout", "m@v2",
                str(tmp_path / "out")], project)
    assert out.returncode == 6, out.stderr[-2000:]
    assert damaged in out.stderr and "loops back" in out.stderr


def test_load_refuses_a_looping_chain(looped: tuple[Path, str]) -> None:
    project, damaged = looped
    code = ("import sys\nfrom modelvc.registry import Registry\n"
            "from modelvc.errors import CorruptObject\n"
            "w = Registry.open('.').load('m@v2')\n"
            "try:\n    [w[k] for k in w]\nexcept CorruptObject as e:\n"
            "    print(e.message)\n    sys.exit(6)\n")
    out = _run([sys.executable, "-c", code], project)
    assert out.returncode == 6, out.stderr[-2000:]
    assert damaged in out.stdout
