"""Channel-following hot swap: promote and rollback switch the served version, a version
that fails to load is never switched to, and swaps under load fail no request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.registry import Registry
from modelvc.serving import swap
from modelvc.serving.metrics import Metrics
from modelvc.serving.runtimes.onnx import OnnxRuntime
from modelvc.serving.swap import Loaded, LoadFailed, Pool

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, Crawling, Gated, in_loop, serving, status, wait_for
from .predictors import LOADED_ON
from .swapload import Client, rest_connect, swap_under_load


def test_follows_promote_and_rollback_keeps_previous_warm(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="modelvc.serving")
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    srv = start_gateway(serve_reg)
    caller = Caller(srv.url)
    assert caller.infer(digits.x[:4])[1]["model_version"] == "1"
    serve_reg.promote("digits@v2", "production", reason="better")
    wait_for(serving(srv.url, 2), "the switch to v2")
    code, doc, _ = caller.infer(digits.x[:4])
    assert (code, doc["model_version"]) == (200, "2")
    assert status(srv.url)["stable"]["previous"] == 1  # kept warm for a rollback
    loaded = srv.gateway.pool.items[serve_reg.resolve("digits@v1").id]
    serve_reg.rollback("digits", "production", reason="back")
    wait_for(serving(srv.url, 1), "the rollback to v1")
    assert caller.infer(digits.x[:4])[1]["model_version"] == "1"
    # The rollback reused the warm v1 (the same loaded object), two versions held.
    assert srv.gateway.pool.items[serve_reg.resolve("digits@v1").id] is loaded
    assert sorted(i.version.number for i in srv.gateway.pool.items.values()) == [1, 2]
    caller.close()
    # each switch is one line in the gateway's log
    said = [r.getMessage() for r in caplog.records if "serving v" in r.getMessage()]
    assert said == ["digits@production: serving v1 (was nothing)",
                    "digits@production: serving v2 (was v1)",
                    "digits@production: serving v1 (was v2)"], said


def test_version_that_fails_to_load_is_never_switched_to(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, b"", "v2", extra={"notes.txt": b"no model in here"})
    srv = start_gateway(serve_reg)
    serve_reg.promote("digits@v2", "production", reason="oops")
    wait_for(lambda: status(srv.url)["stable"]["error"] is not None, "the load failure")
    st = status(srv.url)["stable"]
    assert st["version"] == 1
    assert "digits@v2 failed to load" in st["error"] and "no servable model" in st["error"]
    code, doc, _ = Caller(srv.url).infer(digits.x[:2])
    assert (code, doc["model_version"]) == (200, "1")
    failures = srv.gateway.metrics.registry.get_sample_value(
        "modelvc_load_failures_total", {"model": "digits", "version": "v2"})
    assert failures == 1.0
    # The next good version is picked up as usual.
    commit_onnx(serve_reg, tmp_path, digits.better, "v3")
    serve_reg.promote("digits@v3", "production", reason="fixed")
    wait_for(serving(srv.url, 3), "the switch to v3")
    assert status(srv.url)["stable"]["error"] is None


def test_swap_loop_under_concurrent_load_fails_no_request(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    srv = start_gateway(serve_reg, standby_mb=0)  # every switch loads (test_standby.py)
    # 30 swaps; each one loads (only one previous stays warm, none in standby); a
    # dropped connection is a failed request too.
    tally = swap_under_load(serve_reg, srv.url, digits.x, [2, 3, 1] * 10,
                            rest_connect(srv.url), (OSError,))
    assert tally.failures == []
    assert tally.seen == {"1", "2", "3"} and tally.answered > 100
    swaps = srv.gateway.metrics.registry.get_sample_value(
        "modelvc_swaps_total", {"model": "digits", "channel": "production"})
    assert swaps == 31.0  # the first load and 30 switches
    # Nothing leaks: at most current + previous are loaded, and on disk (beside the
    # optimized graphs and the freed checkouts kept for re-loads, one per version).
    work = tmp_path / "serve0"
    wait_for(lambda: len([p for p in work.iterdir()
                          if p.name not in ("optimized", "kept")]) <= 2, "freed checkouts")
    assert len(srv.gateway.pool.items) <= 2
    assert len(list((work / "optimized").iterdir())) == 3
    assert len(list((work / "kept").iterdir())) <= 3


def test_reload_of_a_freed_version_uses_its_kept_checkout_and_optimized_graph(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A re-load this cheap runs on the event loop (whatever this machine's speed),
    # its session built from the kept graph by a loading thread (a call holding no GIL)
    monkeypatch.setattr(swap, "INLINE_LOAD_S", 60.0)
    built_in: list[str] = []
    build = OnnxRuntime.session_from_optimized

    def recorded(optimized: Path, threads: int) -> Any:
        built_in.append(threading.current_thread().name)
        return build(optimized, threads)

    monkeypatch.setattr(OnnxRuntime, "session_from_optimized", staticmethod(recorded))
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, digits.broken, "v3")
    srv = start_gateway(serve_reg, standby_mb=0)  # v1 freed, not kept loaded
    caller = Caller(srv.url)
    first = caller.infer(digits.x[:8])[1]["outputs"]
    pool = srv.gateway.pool
    v1 = serve_reg.resolve("digits@v1").id
    first_rt = pool.items[v1].runtime
    assert isinstance(first_rt, OnnxRuntime) and not first_rt.reused_optimized
    for n in (2, 3):  # v1 is freed: only one previous version stays loaded
        serve_reg.promote(f"digits@v{n}", "production", reason="next")
        wait_for(serving(srv.url, n), f"the switch to v{n}")
    wait_for(lambda: v1 not in pool.items, "v1 freed")
    kept = tmp_path / "serve0" / "kept" / v1
    wait_for(kept.exists, "v1's checkout kept")
    serve_reg.promote("digits@v1", "production", reason="back")
    wait_for(serving(srv.url, 1), "the switch back to v1")
    again = pool.items[v1].runtime
    assert isinstance(again, OnnxRuntime) and again.reused_optimized
    assert pool.items[v1].inline  # loaded on the loop: no loading thread's GIL hand-offs
    assert built_in and all(n.startswith("modelvc-load") for n in built_in), built_in
    assert not kept.exists()  # moved into place, not checked out again
    assert (pool.items[v1].folder / "model.onnx").read_bytes() == digits.good
    assert caller.infer(digits.x[:8])[1]["outputs"] == first
    # Freed on the loop too (session closed, checkout kept again), and re-loaded again
    for n in (2, 3):
        serve_reg.promote(f"digits@v{n}", "production", reason="next again")
        wait_for(serving(srv.url, n), f"the switch to v{n} again")
    wait_for(lambda: v1 not in pool.items and kept.exists(), "v1 freed and kept again")
    serve_reg.promote("digits@v1", "production", reason="back again")
    wait_for(serving(srv.url, 1), "the second switch back to v1")
    assert pool.items[v1].inline and not kept.exists()
    assert caller.infer(digits.x[:8])[1]["outputs"] == first
    caller.close()


def _loading_threads() -> dict[int, tuple[str, int]]:
    """The gateway's loading threads (in this process): the CPUs each may run on, its nice."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().strip() == "modelvc-load":
                allowed = [ln for ln in (task / "status").read_text().splitlines()
                           if ln.startswith("Cpus_allowed_list:")]
                nice = int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
                out[int(task.name)] = allowed[0].split()[1], nice
    return out


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs this process may run on")
def test_load_cpus_build_every_version_there_and_swaps_fail_no_request(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    load_cpu = cpus[-1]
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    commit_onnx(serve_reg, tmp_path, b"", "v3", extra={"predictor.py": LOADED_ON})
    before = set(_loading_threads())  # earlier tests' gateways, maybe still winding down
    srv = start_gateway(serve_reg, trust="any", load_cpus=[load_cpu])

    def connect() -> Client:
        caller = Caller(srv.url)

        def ask(x: np.ndarray) -> tuple[str | None, Any]:
            code, doc, _ = caller.infer(x)
            return (doc["model_version"], None) if code == 200 else (None, (code, doc))
        return ask, caller.close

    tally = swap_under_load(serve_reg, srv.url, digits.x, [2, 3, 1] * 4, connect,
                            (OSError,))
    assert tally.failures == []
    assert tally.seen == {"1", "2", "3"}
    # The version a Python predictor was built in was constructed on the load CPU only ...
    serve_reg.promote("digits@v3", "production", reason="where was it built")
    wait_for(serving(srv.url, 3), "the switch to v3")
    code, doc, _ = Caller(srv.url).infer(digits.x[:1])
    assert (code, doc["outputs"][0]["data"]) == (200, [load_cpu])
    # ... by the gateway's loading threads, kept there at this process's priority (off
    # the serving CPUs a lower one would only let other work stretch the loads).
    threads = {t: c for t, c in _loading_threads().items() if t not in before}
    assert threads and set(threads.values()) == {(str(load_cpu), os.getpriority(
        os.PRIO_PROCESS, 0))}
    assert srv.gateway.pool.load_cpus == frozenset({load_cpu})


@pytest.mark.parametrize("standby_mb", [0, 64])
def test_a_waiter_on_a_load_its_loader_dropped_gets_a_live_version(
        serve_reg: Registry, digits: Digits, tmp_path: Path, standby_mb: float) -> None:
    # Two holders ask for one version while it loads: the first loads it, the second
    # waits for that load. When the first lets go at once (a rollout's load that was
    # superseded meanwhile), the version is freed before the waiter resumes; the waiter
    # must not be handed the freed version (a slot would then route every request to a
    # closed runtime: 500s until the next switch), but a loaded one. With a standby,
    # the version let go stays loaded there: the waiter takes it back.
    v1 = serve_reg.resolve("digits@v1")

    async def scenario() -> tuple[Loaded, Loaded, dict[str, Any]]:
        pool = Pool(serve_reg, tmp_path / "work", Metrics(), standby_mb=standby_mb)

        async def superseded() -> Loaded:
            item = await pool.hold(v1)
            pool.release(item)  # in the same step, as Reconciler._serve drops a late load
            return item

        first = asyncio.create_task(superseded())
        await asyncio.sleep(0)  # `first` runs up to its load: it is the loader
        waiter = asyncio.create_task(pool.hold(v1))
        dropped, got = await first, await waiter
        try:
            return dropped, got, {"loaded": pool.items.get(v1.id) is got,
                                  "answer": got.runtime.predict({"X": digits.x[:2]}, []),
                                  "standby": dict(pool.standby)}
        finally:
            pool.release(got)
            pool.close()

    dropped, got, seen = in_loop(scenario)
    if standby_mb:
        assert got is dropped and seen["standby"] == {}  # taken back out of standby
    else:
        assert dropped.closed
        assert got is not dropped, "the waiter was handed the version its loader freed"
    assert seen["loaded"]  # loaded (again), and in the pool
    assert len(seen["answer"]) > 0 and got.closed  # freed once its holder let go



def test_a_cancelled_load_fails_its_waiters_and_frees_what_it_loaded(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    # The task that loads a version is cancelled mid-load (FleetAgent.stop cancels its
    # staging tasks; Gateway.stop its followers) while another holder waits for that
    # load. The waiter must get an error, not hang, and the version loaded meanwhile
    # must be freed (runtime closed, checkout gone from the work folder), not leaked.
    v1 = serve_reg.resolve("digits@v1")
    gated = Gated(serve_reg, "digits@v1")
    work = tmp_path / "work"
    work.mkdir()

    async def scenario() -> tuple[BaseException | None, dict[str, Any]]:
        pool = Pool(gated, work, Metrics())  # type: ignore[arg-type]
        loader = asyncio.create_task(pool.hold(v1))
        await asyncio.sleep(0)  # `loader` runs up to its load: it is the loader
        waiter = asyncio.create_task(pool.hold(v1))
        while not gated.entered.is_set():  # the load is under way (its checkout waits)
            await asyncio.sleep(0.01)
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loader
        # the waiter's answer, with a generous bound only against a hang (no threshold)
        done, _ = await asyncio.wait([waiter], timeout=60)
        error = waiter.exception() if done else None
        if not done:
            waiter.cancel()
        gated.open.set()  # the load itself ends now ...
        await asyncio.get_running_loop().run_in_executor(None, pool.close)  # ... and is freed
        return error, {"items": dict(pool.items),
                       "left": sorted(p.name for p in work.iterdir()
                                      if p.name not in ("optimized", "kept"))}

    error, seen = in_loop(scenario)
    assert isinstance(error, LoadFailed), f"the waiter got {error!r}"
    assert "cancelled" in str(error)
    assert seen["items"] == {}
    assert seen["left"] == [], "the cancelled load's checkout was never freed"
    # abandoned at its checkout's first step once the gate opened: nothing was loaded
    assert not (work / "kept" / v1.id).exists()


def _close_while_loading(pool: Pool, gate: Gated, v: Any) -> dict[str, Any]:
    """Cancel the task loading V (held at GATE) and close POOL: whether `close` returned
    while the load was still held (a generous bound only against a hang), and what is
    left in the work folder once the load has ended."""
    async def scenario() -> dict[str, Any]:
        loader = asyncio.create_task(pool.hold(v))
        while not gate.entered.is_set():  # the load is under way
            await asyncio.sleep(0.01)
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loader
        closing = asyncio.get_running_loop().run_in_executor(None, pool.close)
        done, _ = await asyncio.wait([closing], timeout=90)
        held = not gate.open.is_set()
        gate.open.set()  # (a load still under way ends now)
        await closing
        return {"closed while held": bool(done) and held}

    return in_loop(scenario)


def _left(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name not in ("optimized", "kept"))


def test_closing_stops_an_abandoned_load_at_its_next_step(
        serve_reg: Registry, tmp_path: Path) -> None:
    # A gateway stopping cancels its followers, one of them mid-load (a big model's
    # checkout, file after file), then closes the pool. The load stops at its next
    # step, so the stop does not wait for the whole checkout; nothing of it is left.
    v1 = serve_reg.resolve("digits@v1")
    crawl = Crawling(serve_reg, "digits@v1")
    work = tmp_path / "work"
    work.mkdir()
    pool = Pool(crawl, work, Metrics())  # type: ignore[arg-type]
    seen = _close_while_loading(pool, crawl, v1)
    assert seen["closed while held"], "the stop waited for the abandoned load"
    assert _left(work) == [] and pool.items == {}
    assert not (work / "kept" / v1.id).exists()  # stopped mid-checkout: nothing loaded


def test_closing_waits_a_bounded_time_for_a_load_stuck_in_one_step(
        serve_reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step that cannot be cut (here: the checkout's first call blocks) holds the load:
    # closing waits CLOSE_WAIT_S for it, then stops without it; the load, once the step
    # ends, stops at its next one and removes its checkout.
    monkeypatch.setattr(swap, "CLOSE_WAIT_S", 0.5)
    v1 = serve_reg.resolve("digits@v1")
    gated = Gated(serve_reg, "digits@v1")
    work = tmp_path / "work"
    work.mkdir()
    pool = Pool(gated, work, Metrics())  # type: ignore[arg-type]
    seen = _close_while_loading(pool, gated, v1)
    assert seen["closed while held"], "the stop waited for the abandoned load"
    wait_for(lambda: _left(work) == [], "the abandoned load to remove its checkout")
