"""A version's first checkout in the gateway's helper process (serving/checkouts.py):
done there, not in the serving process; the same answers; a helper that dies or fails
costs nothing but the old way; no helper outlives its pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.registry import Registry
from modelvc.serving import checkouts, swap
from modelvc.serving.metrics import Metrics
from modelvc.serving.runtimes import load_runtime
from modelvc.serving.swap import LoadFailed, Pool

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, in_loop, serving, wait_for
from .predictors import CONSTANT


@pytest.fixture(autouse=True)
def _normal_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers at the usual priority: these tests check what the helper does, and on a
    busy machine one at idle priority would (rightly) be found starved and replaced by
    in-process checkouts. The tests of the priority itself turn it back on."""
    monkeypatch.setattr(checkouts, "IDLE_PRIORITY", False)


def _spy_checkouts(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The refs this process checks out itself (the real checkout still runs)."""
    seen: list[str] = []
    real = reg.checkout

    def checkout(ref: str, dest: str | Path, **kw: Any) -> Any:
        seen.append(ref)
        return real(ref, dest, **kw)
    monkeypatch.setattr(reg, "checkout", checkout)
    return seen


def _load(pool: Pool, reg: Registry, ref: str, x: np.ndarray, *,
          inline: list[bool] | None = None) -> dict[str, np.ndarray]:
    """Hold `ref` in the pool (loading it), answer `x` with it, let go; `inline` gets
    whether it was loaded on the event loop."""
    v = reg.resolve(ref)

    async def scenario() -> dict[str, np.ndarray]:
        item = await pool.hold(v)
        if inline is not None:
            inline.append(item.inline)
        try:
            return item.runtime.predict({"X": x}, [])
        finally:
            pool.release(item)
    return in_loop(scenario)


def _expected(folder: Path, data: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    folder.mkdir()
    (folder / "model.onnx").write_bytes(data)
    rt = load_runtime(folder, label="expected")
    try:
        return rt.predict({"X": x}, [])
    finally:
        rt.close()


def test_a_first_load_checks_out_in_the_helper_with_the_same_answers(
        serve_reg: Registry, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, b"", "v3", extra={"predictor.py": CONSTANT})
    in_process = _spy_checkouts(serve_reg, monkeypatch)
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True, trust="any")
    try:
        assert pool.helper is not None
        x = digits.x[:8]
        inline: list[bool] = []
        got = _load(pool, serve_reg, "digits@v2", x, inline=inline)
        want = _expected(tmp_path / "plain", digits.better, x)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        # the helper checked it out into kept/ and wrote its optimized graph; whether
        # the session was then built on the loop depends on the CPU the helper measured
        # a folder with a Python predictor: not prepared, checked out by the helper for
        # a loading thread; its list of files leaves the choice to load_runtime, which
        # finds the predictor first
        assert _load(pool, serve_reg, "digits@v3", x, inline=inline)["label"].tolist() \
            == [0] * len(x)
        assert inline[1] is False
        assert in_process == [], "the serving process checked a version out itself"
        assert pool.helper.pid is not None and pool.helper.pid != os.getpid()
    finally:
        pool.close()


def test_a_dead_helper_costs_only_the_old_way(
        serve_reg: Registry, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for n in (2, 3, 4):
        commit_onnx(serve_reg, tmp_path, digits.better, f"v{n}")
    in_process = _spy_checkouts(serve_reg, monkeypatch)
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True)
    try:
        assert pool.helper is not None
        pool.helper.MAX_STARTS = 1  # no restart: the next checkouts are this process's
        x = digits.x[:4]
        _load(pool, serve_reg, "digits@v2", x)
        pid = pool.helper.pid
        assert pid is not None and in_process == []
        os.kill(pid, signal.SIGKILL)
        # killed between two loads (whether or not it is reaped yet): the load works
        for ref in ("digits@v3", "digits@v4"):
            assert _load(pool, serve_reg, ref, x)["label"].shape[0] == len(x)
        assert in_process == ["digits@v3", "digits@v4"]
    finally:
        pool.close()


def test_a_failed_checkout_fails_the_load_as_in_process(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"notes.txt": b"no model in here"})
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True)
    try:
        with pytest.raises(LoadFailed, match="no servable model"):
            _load(pool, serve_reg, "digits@v2", digits.x[:2])
        left = [p for p in (tmp_path / "work").iterdir()
                if p.name not in ("kept", "optimized", "trash")]
        assert left == [], "the failed load left files"
    finally:
        pool.close()


def test_the_helper_runs_at_idle_priority(
        serve_reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its work takes no CPU anything else wants (the requests' clients). Nothing loads
    # here: on a busy machine a load would (rightly) find it starved and kill it.
    monkeypatch.setattr(checkouts, "IDLE_PRIORITY", True)
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True)
    try:
        assert pool.helper is not None
        pid = pool.helper.pid  # started with the pool
        assert pid is not None
        wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE,
                 "the helper at idle priority")  # (it sets it first thing)
    finally:
        pool.close()


def test_the_helper_ends_with_its_pool(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True)
    assert pool.helper is not None
    _load(pool, serve_reg, "digits@v1", digits.x[:2])
    pid = pool.helper.pid
    assert pid is not None
    pool.close()
    assert pool.helper.pid is None
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)


def test_a_gateway_asked_for_a_helper_swaps_to_a_new_version_through_it(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start,
        monkeypatch: pytest.MonkeyPatch) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    plain = Pool(serve_reg, tmp_path / "plain", Metrics(),
                 load_cpus=frozenset(os.sched_getaffinity(0)))
    plain.close()
    assert plain.helper is None  # off unless asked (ServeConfig.checkout_helper)
    in_process = _spy_checkouts(serve_reg, monkeypatch)
    srv = start_gateway(serve_reg, checkout_helper=True)
    assert srv.gateway.pool.helper is not None
    serve_reg.promote("digits@v2", "production", reason="new")
    wait_for(serving(srv.url, 2), "the switch to v2")
    caller = Caller(srv.url)
    code, doc, _ = caller.infer(digits.x[:4])
    caller.close()
    assert (code, doc["model_version"]) == (200, "2")
    assert in_process == [], "the gateway checked a version out itself"


def test_pruned_checkouts_go_to_the_helper_to_remove(
        serve_reg: Registry, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With a helper, a pruned kept checkout is one rename into the trash, which the
    # helper empties before its next request (no rmtree in the serving process).
    monkeypatch.setattr(swap, "KEEP_CHECKOUTS", 1)
    for n in (2, 3):
        commit_onnx(serve_reg, tmp_path, digits.better, f"v{n}")
    ids = {n: serve_reg.resolve(f"digits@v{n}").id for n in (1, 2, 3)}
    work = tmp_path / "work"

    def holds(kept: int, trash: int) -> Callable[[], bool]:
        return lambda: [p.name for p in (work / "kept").iterdir()] == [ids[kept]] and \
            [p.name.split("-")[0] for p in (work / "trash").iterdir()] == [ids[trash]]
    pool = Pool(serve_reg, work, Metrics(), checkout_helper=True, standby_mb=0)
    try:
        _load(pool, serve_reg, "digits@v1", digits.x[:2])
        _load(pool, serve_reg, "digits@v2", digits.x[:2])
        # (a free runs on a loading thread after the release: waited for)
        wait_for(holds(kept=2, trash=1), "v2 kept, v1 pruned into the trash")
        _load(pool, serve_reg, "digits@v3", digits.x[:2])
        # the helper removed v1's before preparing v3; v2's went in when v3 was freed
        wait_for(holds(kept=3, trash=2), "v3 kept, only v2 in the trash")
    finally:
        pool.close()
    assert not (work / "trash").exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs this process may run on")
def test_a_helper_starved_of_cpu_is_replaced_by_an_in_process_load(
        serve_reg: Registry, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The loading CPU kept busy by work at the usual priority: the helper, at idle
    # priority, gets (next to) no CPU there, is found starved, killed, and the version
    # loaded in process; nothing of the helper's partial work is kept.
    monkeypatch.setattr(checkouts, "IDLE_PRIORITY", True)
    monkeypatch.setattr(checkouts, "STARVED_S", 0.5)
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    cpu = sorted(os.sched_getaffinity(0))[-1]
    in_process = _spy_checkouts(serve_reg, monkeypatch)
    spin = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c",
                             "while True: pass"])
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), checkout_helper=True,
                load_cpus=frozenset({cpu}))
    try:
        assert pool.helper is not None
        got = _load(pool, serve_reg, "digits@v2", digits.x[:4])
        want = _expected(tmp_path / "plain", digits.better, digits.x[:4])
        assert all(np.array_equal(got[k], want[k]) for k in want)
        assert in_process == ["digits@v2"]
        assert pool.helper.pid is None and pool.helper.starts == 1  # killed, not restarted
        v2 = serve_reg.resolve("digits@v2").id
        assert [p.name for p in (tmp_path / "work" / "kept").iterdir()
                if p.name.startswith(v2)] == []
    finally:
        spin.kill()
        spin.wait()
        pool.close()


@pytest.mark.parametrize(("given", "load_cpus", "helper"), [
    ({}, None, False), ({}, [0], True), ({"checkout_helper": False}, [0], False),
    ({"checkout_helper": True}, None, True)])
def test_a_gateway_has_a_helper_by_default_when_it_loads_on_cpus_of_its_own(
        serve_reg: Registry, start_gateway: Start, given: dict[str, Any],
        load_cpus: list[int] | None, helper: bool) -> None:
    srv = start_gateway(serve_reg, load_cpus=load_cpus, **given)
    assert (srv.gateway.pool.helper is not None) == helper
