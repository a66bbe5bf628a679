"""What a one-shot command loads: `--help` and the read commands import no SQLAlchemy
(meta/lite.py reads SQLite directly), no numpy, no web stack; nor do `audit`, `gate
show`, `promote`, `rollback` and `tag`; with the C kernels built, a checkout and a
commit load no numpy either (the codec's buffers come from codec.kernels.empty; only a
delta commit's extrapolation sampling and the numpy fallbacks use it) and no SQLAlchemy
(a commit is recorded by meta/litewrite.py), and without a trust policy a checkout reads
no YAML and loads no cryptography. None of them
creates the records of the other areas (gates, signing, webhooks, tokens, the fleet:
modelvc.records.areas), nor loads the ONNX parser for safetensors files; a read or a
checkout loads no code of the commit's (ingest.record). Start-up time is bench/cli.py's
business; this guards the imports that made it (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelvc.codec import kernels
from modelvc.registry import Registry
from tests.conftest import write_model

# Without the C kernels the codec runs on numpy.
NUMPY = [] if kernels.NATIVE and hasattr(kernels.native, "empty") else ["numpy"]

HEAVY = ("sqlalchemy", "alembic", "numpy", "httpx", "fastapi", "starlette", "uvicorn",
         "torch", "yaml", "cryptography", "modelvc.records.areas", "modelvc.formats.onnx",
         "modelvc.objects.memory")
COMMITS = ("modelvc.ingest.record",)  # what only a write needs

PROBE = """
import json, sys
from modelvc.cli.main import main
heavy = json.loads(sys.argv[2])
sys.argv = ["modelvc", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("LOADED " + json.dumps([m for m in heavy if m in sys.modules]), flush=True)
sys.exit(code)
"""


def loaded(args: list[str], cwd: Path, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    env = {**os.environ, "MODELVC_REGISTRY": str(cwd)}
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(heavy)],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("LOADED "))
    return list(json.loads(line.removeprefix("LOADED ")))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    f = tmp_path / "w" / "model.safetensors"
    base = write_model(f, 0)
    with Registry.init(tmp_path) as reg:
        reg.commit(f, model="m")
        write_model(f, 1, base=base)
        reg.commit(f, model="m")
        reg.promote("m@v1", "production", create=True)
        reg.promote("m@v2", "production")
    return tmp_path


@pytest.mark.parametrize("args", [
    ["--help"],
    ["log", "m"],
    ["log", "m@main", "--json"],
    ["channel", "history", "m", "production"],
    ["refs", "m"],
    ["models"],
])
def test_read_commands_load_nothing_heavy(repo: Path, args: list[str]) -> None:
    assert loaded(args, repo, HEAVY + COMMITS) == []


@pytest.mark.parametrize("args", [
    ["audit"],
    ["audit", "--model", "m", "--channel", "production", "--since", "2020-01-01", "--json"],
    ["gate", "show", "m@v2"],
    ["promote", "m@v1", "--to", "production", "-r", "back"],
    ["promote", "m@v1", "--to", "staging", "--create", "-r", "new channel"],
    ["rollback", "m", "production", "-r", "oops"],
    ["tag", "m@v1", "release-1"],
])
def test_governance_commands_load_no_sqlalchemy(repo: Path, args: list[str]) -> None:
    """The audit trail, gate runs and ref moves are read and written by meta/lite.py
    (a CI job's promote step paid ~0.2 s of CPU for SQLAlchemy's import before)."""
    assert loaded(args, repo, ("sqlalchemy", "alembic")) == []
    with Registry.open_local(repo) as reg:
        assert reg.verify_audit() == []


@pytest.mark.parametrize("ref", ["m@v1", "m@v2"])
def test_checkout_loads_nothing_heavy(repo: Path, ref: str) -> None:
    got = loaded(["checkout", ref, str(repo / "out"), "--json"], repo, HEAVY + COMMITS)
    assert (repo / "out" / "model.safetensors").is_file()
    assert got == NUMPY


def test_commit_loads_nothing_heavy(repo: Path) -> None:
    """A delta against the head (v2, itself a delta of v1: its reference's reference is
    there, so the encoder samples step multiples: codec.kernels.step_ratio) and a first
    version."""
    f = repo / "w" / "model.safetensors"
    base = write_model(f, 2)
    got = loaded(["commit", str(f), "-M", "m", "-b", "exp", "--tag", "t", "--json"], repo)
    assert got == NUMPY
    write_model(f, 3, base=base)
    got = loaded(["commit", str(f), "-M", "other", "--json"], repo)
    assert got == NUMPY
    with Registry.open_local(repo) as reg:
        assert reg.resolve("m@t").number == 3 == reg.resolve("m@exp").number
        assert reg.resolve("other@main").number == 1
        assert reg.verify_audit() == []


AREA_RECORDS = """
import sys
import modelvc.records as records
import modelvc.api
defined = [n for n in ("GateRun", "Deployment", "Webhook") if n in vars(records)]
from modelvc.records import Deployment, Webhook
assert "modelvc.records.areas" in sys.modules
assert Deployment is modelvc.api.Deployment is sys.modules["modelvc.records.areas"].Deployment
assert Webhook.__dataclass_params__.frozen
print(defined)
"""


def test_area_records_are_created_on_first_use() -> None:
    """modelvc.records names every record, but the 17 of the other areas (~0.6 ms each
    to create: ~10 ms of a one-shot command's start-up) are defined when one is asked
    for, and are then the same classes wherever they are imported from."""
    p = subprocess.run([sys.executable, "-c", AREA_RECORDS], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[]"]


THREADS = """
import os
os.environ.pop("OPENBLAS_NUM_THREADS", None)
from modelvc.cli.context import few_arenas
few_arenas()
import numpy
print(len(os.listdir("/proc/self/task")), os.environ["OPENBLAS_NUM_THREADS"])
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_one_shot_commands_start_no_blas_threads() -> None:
    """A commit or checkout does no linear algebra: numpy's import must not start
    OpenBLAS's thread per CPU (their start and spin cost ~20-30 ms of CPU a process)."""
    p = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True,
                       timeout=300, check=True)
    assert p.stdout.split() == ["1", "1"]


def test_version_is_the_installed_one_without_reading_metadata(tmp_path: Path) -> None:
    """`modelvc --version` prints modelvc.__version__, which must be the version pip
    installed (pyproject.toml), and so needs no importlib.metadata at run time."""
    from importlib.metadata import version

    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["--version"]),
                        json.dumps(["importlib.metadata"])], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"modelvc, version {version('modelvc')}"
    assert p.stdout.splitlines()[-1] == "LOADED []"
