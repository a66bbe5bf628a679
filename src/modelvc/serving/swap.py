"""Loaded versions and the channels that follow them.

A `Pool` holds each loaded version once, shared by every slot serving it (a channel's
current and warm previous version, a canary, a shadow, a pinned version). A slot
*holds* a version; a request *enters* it. A version is freed when nothing holds it and
no request is inside it, so a switch is one assignment in the event loop and requests
already running finish on the version they started on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..meta.api import VersionRow
from ..registry import Registry
from .checkouts import CheckoutHelper, HelperFailed, HelperGone, model_file
from .config import STANDBY_MB
from .loadthreads import background, pause, short_switches
from .metrics import Metrics
from .runtimes import Runtime, Trust, load_runtime

log = logging.getLogger("modelvc.serving")
T = TypeVar("T")


INLINE_LOAD_S = 0.002  # a re-load whose session + warm-up took less CPU runs on the loop
KEEP_OPTIMIZED = 8  # versions whose optimized ONNX graph stays on disk for a re-load
KEEP_CHECKOUTS = 8  # freed ONNX versions whose checkout stays on disk for a re-load
KEEP_CHECKOUT_MAX_BYTES = 64 << 20  # ... up to this size each
# Freed pure-compute versions kept loaded: up to config.STANDBY_MB of checkout in all,
# and this many at most: a session costs memory beyond its checkout's bytes (ONNX
# Runtime's own structures), which many tiny versions would add up
STANDBY_VERSIONS = 4


_MISSING = object()


def _by_age(folder: Path) -> list[str]:
    """The names in `folder`, oldest modification first (at start-up only)."""
    with contextlib.suppress(OSError):
        entries = [(e.stat().st_mtime, e.name) for e in os.scandir(folder)
                   if not e.name.endswith(".partial")]
        return [name for _, name in sorted(entries)]
    return []


class LoadFailed(Exception):
    """A version could not be checked out, loaded or warmed up; it is never served."""


class _Dropped(Exception):
    """The load was abandoned (its loader cancelled, or the pool closing): it stops at
    its next step (a file checked out, the session created, a warm-up call)."""


# Pool.close waits this long at most for loads and frees under way: an abandoned load
# stops at its next step, but one step (a big tensor's checkout, an ONNX session's
# creation) cannot be cut; past this the gateway stops without it.
CLOSE_WAIT_S = 10.0


@dataclass(eq=False)
class Loaded:
    model: str
    version: VersionRow
    runtime: Runtime
    folder: Path
    load_seconds: float
    warm_seconds: float
    holders: int = 0
    inflight: int = 0
    closed: bool = False
    # A moving average of one predict call's compute time (s): inf until measured
    predict_s: float = math.inf
    calls: int = 0  # inline calls (Gateway._predict_inline samples their CPU time)
    inline: bool = False  # loaded on the event loop (Pool._load_inline): freed there too

    @property
    def label(self) -> str:
        return f"v{self.version.number}"


class Pool:
    def __init__(self, reg: Registry, workdir: Path, metrics: Metrics, *,
                 trust: Trust = "never", threads: int = 1,
                 load_cpus: frozenset[int] | None = None,
                 checkout_helper: bool = False, standby_mb: float = STANDBY_MB) -> None:
        self.reg = reg
        self.workdir = workdir
        self.metrics = metrics
        self.trust: Trust = trust
        self.threads = threads
        self.items: dict[str, Loaded] = {}
        # Freed versions kept loaded and warm, least recently freed first, up to
        # `standby_mb` of checkout in all and STANDBY_VERSIONS: serving one again (a
        # rollback, a canary back, a cycle of a few versions) is a move between two
        # dicts, where a re-load costs the loop its GIL hand-offs with the session's
        # build in a loading thread and the old session's destruction (~0.1-0.2 ms
        # with the GIL held, its memory gone cold from the caches: docs/benchmarks.md,
        # session 17). Only runtimes that run no user code (inline_safe), never when
        # closing.
        self.standby: dict[str, Loaded] = {}
        self.standby_bytes = int(standby_mb * (1 << 20))
        # Optimized ONNX graphs by version id: a re-load (a rollback, a version back in
        # a canary) skips graph optimization (runtimes/onnx.py)
        self.optimized = workdir / "optimized"
        # Checkouts of freed ONNX versions by version id: a re-load renames one into
        # place instead of checking the version out again (the load's most Python,
        # syscalls and GIL hand-offs); a rollback, a version back in a canary.
        self.kept = workdir / "kept"
        # What those two hold, least recently used first, in memory: a load or a free
        # then lists, stats and touches nothing there (each file call is a GIL hand-off
        # with the event loop, and the loop waits for the GIL back: a swap's tail). A
        # kept checkout maps to its model file (None: kept by an earlier process).
        self.kept.mkdir(parents=True, exist_ok=True)
        self.optimized.mkdir(exist_ok=True)
        self._kept: dict[str, Path | None] = dict.fromkeys(_by_age(self.kept))
        self._graphs: dict[str, None] = dict.fromkeys(_by_age(self.optimized))
        self._disk = threading.Lock()  # the two loading threads share those two
        # CPU seconds of each version's last session creation + warm-up (see _load_inline)
        self._session_s: dict[str, float] = {}
        self._loading: dict[str, asyncio.Future[Loaded]] = {}
        # Loads and registry reads never queue behind inference, nor inference behind them;
        # on `load_cpus` when given (ServeConfig.load_cpus: checkouts, session creation,
        # warm-up and frees then never run on a serving core), else at a lower priority.
        self.load_cpus = load_cpus
        self._io = ThreadPoolExecutor(2, thread_name_prefix="modelvc-load",
                                      initializer=background, initargs=(load_cpus,))
        self._closing = threading.Event()  # every load under way stops at its next step
        self._jobs: set[Future[Any]] = set()  # what the loading threads have to do
        # A version's first load prepared in a helper process (serving/checkouts.py;
        # ServeConfig.checkout_helper), on `load_cpus` when given, for a local registry.
        self.helper: CheckoutHelper | None = None
        # Kept checkouts pruned with a helper: one rename into `trash`, which the
        # helper empties before its next request (no rmtree in this process).
        self.trash = workdir / "trash"
        if checkout_helper and isinstance(reg, Registry):
            self.trash.mkdir(exist_ok=True)
            self.helper = CheckoutHelper(reg.location, load_cpus, self.trash)
            self.helper.warm()

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    async def hold(self, version: VersionRow) -> Loaded:
        """The loaded version, loading and warming it up first if needed; +1 holder."""
        while True:
            item = self.items.get(version.id)
            if item is None and version.id in self.standby:
                item = self.items[version.id] = self.standby.pop(version.id)
            if item is None:
                item = await self._load_or_wait(version)
                # A waiter resumes after the loader: the loader's holder may have let go
                # meanwhile (a rollout's load superseded while it ran: Reconciler._serve
                # releases it in the same step), freeing the version or putting it in
                # standby. Never hand out a freed one (a slot would route every request
                # to a closed runtime), nor one from standby without taking it back.
                if item.closed or self.items.get(version.id) is not item:
                    continue
            item.holders += 1
            return item

    async def _load_or_wait(self, version: VersionRow) -> Loaded:
        """Load `version`, or wait for the load under way (whose result may be freed
        by the time a waiter runs again)."""
        pending = self._loading.get(version.id)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._loading[version.id] = pending
        try:
            item = await self._load_here_or_there(version)
        except LoadFailed as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: waiters re-raise it
            raise
        except asyncio.CancelledError:
            pending.set_exception(LoadFailed(
                f"{version.model}@v{version.number}: its load was cancelled (the "
                "gateway is stopping, or the switch that wanted it was dropped)"))
            pending.exception()
            raise
        finally:
            del self._loading[version.id]
        self.items[version.id] = item
        pending.set_result(item)
        self.metrics.loaded.set(len(self.items) + len(self.standby))
        return item  # (no await before the caller's hold: it cannot be freed)

    async def _load_here_or_there(self, version: VersionRow) -> Loaded:
        """A cheap re-load on the loop (its session built by a loading thread meanwhile,
        see _load_inline), else the whole load in a loading thread."""
        if self._inline_ready(version):
            graph = self.optimized / f"{version.id}-t{self.threads}.onnx"
            try:  # calls into ONNX Runtime that hold no GIL: the loop serves meanwhile
                prepared = await self.call(lambda: self._warm_session(graph))
            except Exception as exc:  # the graph gone or damaged: the thread's load
                log.info("%s@v%d: no session from its kept graph (%s)", version.model,
                         version.number, exc)
            else:
                if self._inline_ready(version):  # (still: nothing else ran it meanwhile)
                    quick = self._load_inline(version, prepared)
                    if quick is not None:
                        return quick
                else:
                    prepared[0].close()
        dropped = threading.Event()
        job = self._submit(self._load, version, dropped)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            # The loader was cancelled (a gateway or fleet agent stopping): the thread
            # cannot be, so the load stops at its next step (or, past its last, what it
            # loaded is freed when it ends), and waiters are told (by _load_or_wait)
            # rather than left waiting for a result nobody delivers.
            dropped.set()
            job.add_done_callback(self._free_abandoned)
            raise

    def _prepare(self, v: VersionRow) -> None:
        """A first load as cheap as a re-load (with a helper): the helper process
        checks `v` out into `kept` and writes its optimized graph (this thread only
        waits for its answer: two GIL hand-offs with the loop, not one per step of a
        checkout); the load then renames the checkout into place and builds the session
        from the kept graph, as a re-load does. Not an ONNX-only version, too large to
        keep, or the helper failed: nothing kept, the load checks it out."""
        if self.helper is None or v.id in self._kept or v.raw_size > KEEP_CHECKOUT_MAX_BYTES:
            return
        graph = self.optimized / f"{v.id}-t{self.threads}.onnx"
        try:
            doc = self.helper.prepare(f"{v.model}@v{v.number}", self.kept / v.id, graph,
                                      self.threads)
        except HelperFailed as exc:
            log.info("%s@v%d: not prepared by the helper: %s", v.model, v.number, exc)
            if isinstance(exc, HelperGone):  # its partial checkout and graph may be left
                for left in self.kept.glob(f"{v.id}.partial-*"):
                    shutil.rmtree(left, ignore_errors=True)
                graph.with_name(graph.name + ".partial").unlink(missing_ok=True)
            return
        self._keep_optimized(graph)
        with self._disk:
            self._kept.pop(v.id, None)
            self._kept[v.id] = Path(doc["model"])
        # (the helper's measure of a session from the graph is not kept: the first
        # session from it in this process measures its own, and re-loads decide on that)

    def _free_abandoned(self, job: Future[Loaded]) -> None:
        """Once the load whose loader was cancelled ends, free what it loaded (on a
        loading thread, as any free)."""
        if job.cancelled() or job.exception() is not None:
            return  # never started, or failed (a failed load frees itself)
        item = job.result()
        item.closed = True
        try:
            self._submit(self._free, item)
        except RuntimeError:  # the pool is closing: free it here
            self._free(item)

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """FN(*ARGS) on a loading thread, counted among the jobs `close` waits for."""
        job = self._io.submit(fn, *args)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    def release(self, item: Loaded) -> None:
        item.holders -= 1
        self._maybe_free(item)

    def enter(self, item: Loaded) -> None:
        item.inflight += 1

    def leave(self, item: Loaded) -> None:
        item.inflight -= 1
        self._maybe_free(item)

    def _maybe_free(self, item: Loaded) -> None:
        if item.holders > 0 or item.inflight > 0 or item.closed or \
                self.items.get(item.version.id) is not item:
            return
        del self.items[item.version.id]
        if getattr(item.runtime, "inline_safe", False) and not self._closing.is_set() \
                and item.version.raw_size <= self.standby_bytes:
            self.standby[item.version.id] = item
            room = self.standby_bytes
            for n, (vid, kept) in enumerate(reversed(list(self.standby.items()))):
                room -= kept.version.raw_size  # (newest first)
                if room < 0 or n >= STANDBY_VERSIONS:
                    self._close(self.standby.pop(vid))
        else:
            self._close(item)
        self.metrics.loaded.set(len(self.items) + len(self.standby))

    def _close(self, item: Loaded) -> None:
        """Free `item` for good: on the loop if loaded there (_free_inline), else on a
        loading thread."""
        item.closed = True
        if item.inline and self._free_inline(item):
            return
        self._submit(self._free, item)

    def _inline_ready(self, v: VersionRow) -> bool:
        """Whether a re-load of `v` may be finished on the loop: its checkout and its
        optimized graph kept, and its last load under INLINE_LOAD_S of CPU (a thread's
        load: session creation + warm-up; an inline one: the loop's part)."""
        cost = self._session_s.get(v.id, math.inf)
        cached = f"{v.id}-t{self.threads}.onnx"
        return cost < INLINE_LOAD_S and isinstance(self._kept.get(v.id), Path) \
            and cached in self._graphs

    def _warm_session(self, graph: Path) -> tuple[Runtime, float]:
        """In a loading thread: a runtime on a session from the kept graph, warmed up,
        and the CPU of one warm one-row call. ONNX Runtime holds no GIL while it builds
        a session or runs one, so the loop serves meanwhile (the Python around those
        calls is a few tens of microseconds)."""
        from .runtimes.onnx import OnnxRuntime

        with short_switches():
            sess = OnnxRuntime.session_from_optimized(graph, self.threads)
            runtime = OnnxRuntime(graph, threads=self.threads, optimized=graph, session=sess)
            samples = runtime.sample_inputs()
            for sample in samples:
                runtime.predict(sample, [])
            if not samples:
                return runtime, math.inf
            c0 = time.thread_time()
            runtime.predict(samples[0], [])
            return runtime, time.thread_time() - c0

    def _load_inline(self, v: VersionRow, prepared: tuple[Runtime, float]) -> Loaded | None:
        """Re-load `v` on the event loop itself with its runtime prepared by a loading
        thread (_warm_session): the loop only renames the kept checkout into place and
        records the version (the digits MLP: median ~0.13 ms, bench/swap_probe.py). A whole load
        in a loading thread takes the GIL from the loop at each of its Python steps, and
        each time the loop waits for it back, woken from another core: a few
        milliseconds of slower requests per swap (docs/benchmarks.md, serving, session
        9); the session built and warmed on the loop held it ~0.3-0.7 ms a swap (session
        16). None: load it in a thread (it failed here: checked out there afresh)."""
        try:
            item = self._load_version(v, inline=True, prepared=prepared)
        except LoadFailed:
            return None
        item.inline = True
        return item

    def _free_inline(self, item: Loaded) -> bool:
        """Free a version loaded on the loop there too: its session's destruction (tens of
        microseconds) and one rename into `kept`; False (nothing done) if it cannot be kept
        that way, or kept checkouts are to be pruned without a helper to remove them: a
        loading thread frees it then."""
        if len(self._kept) >= KEEP_CHECKOUTS and self.helper is None:
            return False
        item.runtime.close()
        if not self._keep_checkout(item):
            self._submit(shutil.rmtree, item.folder, True)
        return True

    def _load(self, v: VersionRow, dropped: threading.Event) -> Loaded:
        with short_switches():
            self._prepare(v)
            return self._load_version(v, dropped=dropped)

    def _load_version(self, v: VersionRow, inline: bool = False,
                      dropped: threading.Event | None = None,
                      prepared: tuple[Runtime, float] | None = None) -> Loaded:
        label = f"{v.model}@v{v.number}"

        def going(*_: object) -> None:
            """Stop here if the load was abandoned (also the checkout's progress)."""
            if self._closing.is_set() or (dropped is not None and dropped.is_set()):
                raise _Dropped(label)

        folder = self.workdir / f"{v.id[:16]}-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        runtime: Runtime | None = None
        try:
            with self._disk:
                kept = self._kept.pop(v.id, _MISSING)
            model: Path | None = None  # the ONNX file (a kept checkout, or the helper said)
            try:  # versions are immutable and nothing writes into an ONNX checkout
                if kept is _MISSING:
                    raise FileNotFoundError(v.id)
                (self.kept / v.id).rename(folder)
                model = folder / kept if isinstance(kept, Path) else None
            except OSError:  # none kept: check it out
                model = self._checkout(label, folder, going)
            going()
            if not inline:
                pause()
            c_session = time.thread_time()
            cached = self.optimized / f"{v.id}-t{self.threads}.onnx"
            with self._disk:
                graph = self._graphs.pop(cached.name, _MISSING) is not _MISSING
                if graph:  # most recently used
                    self._graphs[cached.name] = None
            warm: float | None = None  # a prepared runtime's warm one-row call CPU
            if prepared is not None and model is not None and graph:
                runtime, warm = prepared  # built and warmed from this graph (inline)
                prepared = None
                runtime.model_file = model  # type: ignore[attr-defined]
            elif model is not None:  # ONNX (a predictor.py would have won: never kept)
                runtime = load_runtime(folder, label=label, threads=self.threads,
                                       optimized=cached, model_file=model,
                                       optimized_exists=graph)
            else:
                signed = self.trust == "signed" and (folder / "predictor.py").exists() \
                    and self._signed(v)
                runtime = load_runtime(folder, label=label, trust=self.trust, signed=signed,
                                       threads=self.threads, optimized=cached,
                                       optimized_exists=graph)
            if prepared is not None:  # not for this load (its graph went meanwhile)
                prepared[0].close()
                prepared = None
            if not graph:
                self._keep_optimized(cached)
            t1 = time.perf_counter()
            samples = runtime.sample_inputs() if warm is None else []
            for sample in samples:
                going()
                if not inline:
                    pause()
                runtime.predict(sample, [])
            # A one-row call once warm (a session's first calls cost 10-30x more): how
            # long a request will take, which decides whether it may run on the loop
            # (Gateway._inline; only pure-compute runtimes: user code is called no more)
            cpu = math.inf if warm is None else warm
            if samples and getattr(runtime, "inline_safe", False):
                if not inline:
                    pause()
                c0 = time.thread_time()
                runtime.predict(samples[0], [])
                cpu = time.thread_time() - c0
            t2 = time.perf_counter()
            self._session_s[v.id] = time.thread_time() - c_session
        except Exception as exc:  # any failure means: never switch to this version
            if runtime is not None:
                runtime.close()
            if prepared is not None:  # never taken
                prepared[0].close()
            shutil.rmtree(folder, ignore_errors=True)
            self._session_s.pop(v.id, None)
            if isinstance(exc, _Dropped):  # not a failure of the version: no count
                raise LoadFailed(f"{label}: its load was abandoned") from exc
            if inline:  # tried again in a loading thread
                raise LoadFailed(str(exc)) from exc
            self.metrics.load_failures.labels(v.model, f"v{v.number}").inc()
            raise LoadFailed(f"{label} failed to load: {type(exc).__name__}: {exc}") from exc
        self.metrics.load_seconds.labels(v.model, f"v{v.number}").set(t1 - t0)
        self.metrics.warmup_seconds.labels(v.model, f"v{v.number}").set(t2 - t1)
        log.info("loaded %s in %.3fs%s, warmed up in %.3fs", label, t1 - t0,
                 " (its optimized graph kept from a previous load)"
                 if getattr(runtime, "reused_optimized", False) else "", t2 - t1)
        return Loaded(v.model, v, runtime, folder, t1 - t0, t2 - t1, predict_s=cpu)

    def _checkout(self, label: str, folder: Path, going: Callable[..., None]
                  ) -> Path | None:
        """Check `label` out into `folder`, in the helper process when there is one
        (this thread then only waits for its answer: no GIL hand-offs with the event
        loop per step of the checkout); the ONNX file to load if the helper's list of
        files says which (None: load_runtime looks)."""
        if self.helper is not None:
            try:
                return model_file(folder, self.helper.checkout(label, folder))
            except HelperFailed as exc:  # checked out here: the same errors as ever
                log.info("%s: checked out in process (the helper: %s)", label, exc)
                shutil.rmtree(folder, ignore_errors=True)
        self.reg.checkout(label, folder, progress=going)
        return None

    def _keep_optimized(self, written: Path) -> None:
        """Count `written` (if this load wrote it) among the kept graphs; drop all but
        the KEEP_OPTIMIZED most recently used (a re-load adds none and touches no file)."""
        if not written.exists():  # not written: too large, or ONNX Runtime refused
            return
        with self._disk:
            self._graphs[written.name] = None
            old = list(self._graphs)[:-KEEP_OPTIMIZED]
            for name in old:
                del self._graphs[name]
        for name in old:
            (self.optimized / name).unlink(missing_ok=True)

    def _signed(self, v: VersionRow) -> bool:
        from ..signing import verify_version

        ok, why = verify_version(self.reg, v)
        if not ok:
            log.warning("%s@v%d is not validly signed: %s", v.model, v.number, why)
        return ok

    def _free(self, item: Loaded) -> None:
        with short_switches():
            item.runtime.close()
            pause()
            if not self._keep_checkout(item):
                shutil.rmtree(item.folder, ignore_errors=True)

    def _keep_checkout(self, item: Loaded) -> bool:
        """Keep a freed ONNX version's checkout for a re-load (the KEEP_CHECKOUTS most
        recently freed, up to KEEP_CHECKOUT_MAX_BYTES each); False if not kept. One
        rename: the order and the model file are remembered, not read back from disk."""
        if item.runtime.platform != "onnxruntime_onnx" or \
                item.version.raw_size > KEEP_CHECKOUT_MAX_BYTES:
            return False
        vid = item.version.id
        model = getattr(item.runtime, "model_file", None)
        try:
            rel = model.relative_to(item.folder) if isinstance(model, Path) else None
            item.folder.rename(self.kept / vid)
        except (OSError, ValueError):  # kept already (or the disk refuses): remove this
            return False
        with self._disk:
            self._kept.pop(vid, None)
            self._kept[vid] = rel
            old = list(self._kept)[:-KEEP_CHECKOUTS]
            for name in old:
                del self._kept[name]
        for name in old:
            self._discard(self.kept / name)
        return True

    def _discard(self, folder: Path) -> None:
        """Remove a pruned kept checkout: with a helper, one rename into `trash` (the
        helper empties it), else here."""
        if self.helper is not None:
            with contextlib.suppress(OSError):
                folder.rename(self.trash / f"{folder.name}-{uuid.uuid4().hex[:8]}")
                return
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Free every loaded version; loads under way stop at their next step. Waits
        CLOSE_WAIT_S at most for the loading threads: a load abandoned inside one long
        step (a big tensor's checkout, an ONNX session's creation) does not hold the
        gateway's stop (it stops, and its checkout is removed, when that step ends)."""
        self._closing.set()
        for item in list(self.items.values()):
            item.holders = item.inflight = 0
            self._maybe_free(item)
        while self.standby:
            self._close(self.standby.popitem()[1])
        _, busy = wait(list(self._jobs), timeout=CLOSE_WAIT_S)
        if busy:
            log.warning("stopping with %d load(s) or free(s) still under way after %.0f s: "
                        "they stop at their next step", len(busy), CLOSE_WAIT_S)
        self._io.shutdown(wait=not busy)
        if self.helper is not None:
            self.helper.close()
            shutil.rmtree(self.trash, ignore_errors=True)
