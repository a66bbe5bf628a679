"""Freed versions kept loaded (swap.Pool.standby): serving one again takes the same
loaded runtime back with no load; the standby holds at most its budget of checkout
(the least recently freed go first, closed for good); user code never waits there;
closing the pool frees it; and a gateway's swaps among a few versions fail no request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.errors import UsageError
from modelvc.registry import Registry
from modelvc.serving import swap
from modelvc.serving.config import load_config
from modelvc.serving.metrics import Metrics
from modelvc.serving.runtimes.onnx import OnnxRuntime
from modelvc.serving.swap import Loaded, Pool

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, in_loop, serving, status, wait_for
from .predictors import CONSTANT
from .swapload import rest_connect, swap_under_load


def _cycle(pool: Pool, reg: Registry, refs: list[str], x: np.ndarray
           ) -> list[tuple[Loaded, list[Any]]]:
    """Hold each of `refs` in turn, answer `x` with it, let go: what was held, and its
    answer."""
    async def scenario() -> list[tuple[Loaded, list[Any]]]:
        out = []
        for ref in refs:
            item = await pool.hold(reg.resolve(ref))
            try:
                got = item.runtime.predict({"X": x}, [])
                out.append((item, [v.tolist() for v in got.values()]))
            finally:
                pool.release(item)
        return out
    return in_loop(scenario)


def _loads(pool: Pool) -> list[str]:
    """The versions `pool` loads from now on (the real load still runs)."""
    seen: list[str] = []
    real = pool._load_here_or_there

    async def counted(version: Any) -> Loaded:
        seen.append(f"v{version.number}")
        return await real(version)
    pool._load_here_or_there = counted  # type: ignore[method-assign]
    return seen


def test_a_freed_version_is_served_again_from_standby_without_a_load(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    pool = Pool(serve_reg, tmp_path / "work", Metrics())
    loads = _loads(pool)
    try:
        x = digits.x[:8]
        first = _cycle(pool, serve_reg, ["digits@v1", "digits@v2"], x)
        v1 = serve_reg.resolve("digits@v1").id
        assert loads == ["v1", "v2"]
        assert list(pool.standby) == [v1, serve_reg.resolve("digits@v2").id]
        assert pool.items == {}  # held by nothing: not served, but still loaded
        assert pool.metrics.loaded._value.get() == 2  # "versions held in memory"
        again = _cycle(pool, serve_reg, ["digits@v1", "digits@v2", "digits@v1"], x)
        assert loads == ["v1", "v2"]  # no load since
        assert [item for item, _ in again] == [first[0][0], first[1][0], first[0][0]]
        assert [answer for _, answer in again] == [first[0][1], first[1][1], first[0][1]]
        assert not any(item.closed for item, _ in again)
        assert (first[0][0].folder / "model.onnx").read_bytes() == digits.good
    finally:
        pool.close()
    assert all(item.closed for item, _ in first)  # closing frees the standby
    runtime = first[0][0].runtime
    assert isinstance(runtime, OnnxRuntime) and runtime._sess is None


def test_the_standby_keeps_its_budget_the_least_recently_freed_go_first(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    vs = {n: serve_reg.resolve(f"digits@v{n}") for n in (1, 2, 3)}
    budget = vs[2].raw_size + vs[3].raw_size  # room for the last two freed, not three
    assert vs[1].raw_size > 0
    pool = Pool(serve_reg, tmp_path / "work", Metrics(), standby_mb=budget / (1 << 20))
    loads = _loads(pool)
    try:
        held = _cycle(pool, serve_reg, ["digits@v1", "digits@v2", "digits@v3"], digits.x[:4])
        assert list(pool.standby) == [vs[2].id, vs[3].id]
        assert held[0][0].closed and not held[1][0].closed and not held[2][0].closed
        # v1 freed for good: its checkout kept on disk for a re-load, as without standby
        wait_for(lambda: (tmp_path / "work" / "kept" / vs[1].id).exists(), "v1 kept")
        _cycle(pool, serve_reg, ["digits@v1"], digits.x[:4])
        assert loads == ["v1", "v2", "v3", "v1"]  # loaded again; v2 then went
        assert list(pool.standby) == [vs[3].id, vs[1].id] and held[1][0].closed
    finally:
        pool.close()


def test_the_standby_holds_a_few_versions_however_small(
        serve_reg: Registry, digits: Digits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swap, "STANDBY_VERSIONS", 2)
    for n in (2, 3, 4):
        commit_onnx(serve_reg, tmp_path, digits.better if n % 2 else digits.broken, f"v{n}")
    pool = Pool(serve_reg, tmp_path / "work", Metrics())  # 64 MB: room for all of them
    try:
        held = _cycle(pool, serve_reg, [f"digits@v{n}" for n in (1, 2, 3, 4)], digits.x[:2])
        assert list(pool.standby) == [serve_reg.resolve(f"digits@v{n}").id for n in (3, 4)]
        assert [item.closed for item, _ in held] == [True, True, False, False]
    finally:
        pool.close()


def test_no_standby_when_off_or_for_user_code(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"predictor.py": CONSTANT})
    off = Pool(serve_reg, tmp_path / "off", Metrics(), standby_mb=0)
    try:
        (item, _), = _cycle(off, serve_reg, ["digits@v1"], digits.x[:2])
        assert item.closed and off.standby == {}
    finally:
        off.close()
    pool = Pool(serve_reg, tmp_path / "on", Metrics(), trust="any")
    try:
        (item, _), = _cycle(pool, serve_reg, ["digits@v2"], digits.x[:2])
        assert item.closed and pool.standby == {}  # a Python predictor: freed at once
    finally:
        pool.close()


def test_swaps_among_standby_versions_under_load_fail_no_request(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    srv = start_gateway(serve_reg)
    loads = _loads(srv.gateway.pool)  # (v1 loaded at start)
    tally = swap_under_load(serve_reg, srv.url, digits.x, [2, 3, 1] * 6,
                            rest_connect(srv.url), (OSError,))
    assert tally.failures == []
    assert tally.seen == {"1", "2", "3"} and tally.answered > 50
    pool = srv.gateway.pool
    # each version loaded once: current, previous, and the third in standby
    assert sorted(loads) == ["v2", "v3"]
    assert len(pool.items) == 2 and len(pool.standby) == 1
    held = srv.gateway.metrics.registry.get_sample_value("modelvc_loaded_versions", {})
    assert held == 3.0
    (kept,) = pool.standby.values()
    assert status(srv.url)["standby"] == [kept.version.number]
    serve_reg.promote("digits@v2", "production", reason="one more")
    wait_for(serving(srv.url, 2), "the switch to v2")
    code, doc, _ = Caller(srv.url).infer(digits.x[:8])
    assert (code, doc["model_version"]) == (200, "2")


def test_standby_mb_must_be_a_size(tmp_path: Path) -> None:
    models = [{"model": "digits"}]
    assert load_config(None, {"models": models}).standby_mb == 64.0
    assert load_config(None, {"models": models, "standby_mb": 0}).standby_mb == 0
    for bad in (-1, "lots", True):
        with pytest.raises(UsageError, match="standby_mb"):
            load_config(None, {"models": models, "standby_mb": bad})
