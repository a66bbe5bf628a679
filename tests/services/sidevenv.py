"""Side venvs with an older client (huggingface_hub 0.x, MLflow 2.x) for interop tests.

Built once per machine, not once per clone: they live in the test cache
(~/.cache/modelvc-tests, or MODELVC_TEST_CACHE; the trained digits models live there too),
named by what they hold and the Python that runs them, so a fresh clone on a machine that
ran the suite before skips the ~2-minute install. A file lock makes xdist workers and
parallel runs wait for one builder; the venv is built aside and renamed into place, so a
killed build leaves nothing half-made behind (the next one starts over).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("MODELVC_TEST_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelvc-tests"
    return Path(root)


def side_venv(name: str, packages: list[str], usable: Callable[[Path], bool]) -> Path:
    """The python of a venv holding `packages` (pip specs), built if missing or if
    `usable(python)` says it no longer works."""
    base = getattr(sys, "_base_executable", sys.executable)  # what `-m venv` links to
    key = hashlib.sha256("\n".join([sys.version, base, *packages]).encode())
    venv = cache_dir() / f"venv-{name}-{key.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if usable(python):
            return python
        building = venv.with_suffix(f".building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *packages], check=True)
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)  # only bin/python (a symlink) is used: shebangs would not move
    if not usable(python):
        raise RuntimeError(f"{venv} was built but does not work: delete it and rerun")
    return python


def prebuild() -> None:
    """Build (or check) every side venv the suite uses, one after the other: scripts/test
    runs this beside ruff and mypy, so pytest finds them ready on a fresh machine."""
    from tests.hf.conftest import hub0_venv
    from tests.mlflow.test_mlflow2 import mlflow2_venv

    for build in (hub0_venv, mlflow2_venv):
        print(f"side venv ready: {build()}", file=sys.stderr)


if __name__ == "__main__":
    prebuild()
