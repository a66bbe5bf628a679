"""The gateway: served models, request routing, inference, feedback, status (the
followed channels and the canary automation are in following.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..canary import Clock, route_to_canary
from ..errors import Conflict, ModelvcError, NotFound
from ..registry import Registry
from .config import ServeConfig
from .following import Following
from .identity import DEFAULT_ACTOR, Identity
from .metrics import Metrics
from .protocol import Answer, BadRequest, InferRequest, check_signature
from .runtimes import RuntimeClosed, RuntimeError_
from .served import ServedModel
from .swap import Loaded, Pool
from .workdirs import Workdir, sweep

log = logging.getLogger("modelvc.serving")
MAX_SHADOW_BACKLOG = 32
VERSION_HEADER, EPOCH_HEADER = "x-modelvc-version", "x-modelvc-epoch"
FLEET_CANARY = "fleet-canary"  # the channel label of requests a fleet canary answered


INLINE_S = 0.0005  # predict calls this short run on the event loop (see Gateway._inline)
INLINE_ELEMENTS = 1 << 16
SAMPLE_EVERY = 7  # an inline call's CPU time is measured one call in 8 (a mask)


class _Hot(NamedTuple):
    requests: Any
    latency: Any
    inflight: Any


class NotReady(Exception):
    """The model has no loaded version to answer with (HTTP 503)."""

    status = 503


class FleetHook(Protocol):
    """A fleet agent (modelvc.fleet) that decides when the stable slot switches."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def catch_up(self, sm: ServedModel, epoch: int) -> None: ...


class Gateway:
    def __init__(self, reg: Registry, cfg: ServeConfig, *, workdir: Path | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.reg, self.cfg = reg, cfg
        self.metrics = Metrics()
        # Our own (removed at stop), and those of gateways killed before their stop
        # (kill -9, a crash) removed now: each holds a lock while its gateway lives.
        self._own_workdir: Workdir | None = None
        if workdir is None:
            sweep()
            self._own_workdir = Workdir()
            workdir = self._own_workdir.path
        self.workdir = workdir
        self.pool = Pool(reg, self.workdir, self.metrics, trust=cfg.trust, threads=cfg.threads,
                         load_cpus=frozenset(cfg.load_cpus) if cfg.load_cpus else None,
                         checkout_helper=bool(cfg.load_cpus) if cfg.checkout_helper is None
                         else cfg.checkout_helper, standby_mb=cfg.standby_mb)
        self._infer = ThreadPoolExecutor(cfg.workers, thread_name_prefix="modelvc-infer")
        # `clock`: the windows' (and statuses') clock; tests step it instead of sleeping
        self.models = {m.name: ServedModel(m, self.pool, m.canary.policy.window if m.canary
                                           else 60.0, clock=clock) for m in cfg.models}
        self._tasks: list[asyncio.Task[None]] = []
        self._mirrors: set[asyncio.Task[None]] = set()
        self.agent: FleetHook | None = None  # in a fleet, it switches the stable slots
        self.identity = Identity(cfg.actor or DEFAULT_ACTOR, cfg.token)
        self.following = Following(reg, self.pool, self.identity, self.metrics,
                                   cfg.poll_interval)
        self._hots: dict[tuple[str, str, str], _Hot] = {}
        # Request ids the caller did not give: 32 hex digits like a uuid4's, a random
        # prefix per gateway and a count (uuid4 reads the system's random source per
        # call: 10+ us of a request here).
        self._id_prefix, self._ids = uuid.uuid4().hex[:16], itertools.count()
        # `modelvc serve` (its own process) sets it: after start-up, the collector stops
        # scanning the start-up heap (modules, sessions), so a full collection, which a
        # load's allocations can trigger, no longer holds the GIL for milliseconds.
        self.freeze_gc = False

    # --- lifecycle
    async def start(self) -> None:
        """Load what every followed ref points to, then keep following them."""
        for sm in self.models.values():
            await self.following.preflight(sm)
            own = [f for f in sm.followers() if self.agent is None or f is not sm.stable]
            for f in own:
                await f.refresh()
            for f in own:
                self._tasks.append(asyncio.create_task(self.following.follow(sm, f)))
        if self.agent is not None:
            await self.agent.start()
        if self.freeze_gc:
            gc.collect()
            gc.freeze()

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        for sm in self.models.values():
            for f in [*sm.followers(), *sm.pinned.values()]:
                f.close()
        self._infer.shutdown(wait=True)
        self.pool.close()
        if self._own_workdir is not None:
            self._own_workdir.remove()

    def ready(self) -> bool:
        return all(sm.stable.current is not None for sm in self.models.values())

    # --- requests
    def served(self, name: str) -> ServedModel:
        sm = self.models.get(name)
        if sm is None:
            raise NotFound(f"model {name!r} is not served here; serving {sorted(self.models)}")
        return sm

    async def slot(self, sm: ServedModel, selector: str | None, key: str | None,
                   min_epoch: int | None = None) -> tuple[Loaded, str]:
        """The loaded version a request goes to, and the channel label it is counted under.
        A fleet canary by share takes its share of keys, and every caller who already saw
        its epoch (so nobody is sent back to an older epoch mid-trial)."""
        if selector is None:
            share = sm.fleet_share
            if share is not None and share.epoch > sm.stable.epoch and (
                    (min_epoch is not None and min_epoch >= share.epoch)
                    or route_to_canary(share.percent, key)):
                return share.item, FLEET_CANARY
            live = sm.canary_live()
            if live is not None and sm.cfg.canary and route_to_canary(sm.cfg.canary.percent,
                                                                      key):
                return live, sm.cfg.canary.ref
            follower = sm.stable
        else:
            named = {f.ref: f for f in sm.followers()}
            sel = selector[1:] if selector[:1] == "v" and selector[1:].isdigit() else selector
            if selector in named:
                follower = named[selector]
            elif sel.isdigit() and len(sel) <= 9:  # version numbers are 32-bit
                follower = await sm.pinned_version(int(sel))
            else:
                raise NotFound(f"model {sm.cfg.name!r} has no version {selector!r}; use a "
                               f"number (3 or v3) or a followed channel {sorted(named)}")
        if follower.current is None:
            raise NotReady(f"{sm.cfg.model}@{follower.ref} is not loaded"
                           + (f": {follower.last_error}" if follower.last_error else ""))
        return follower.current, follower.ref

    async def infer(self, name: str, selector: str | None, req: InferRequest,
                    key: str | None, min_epoch: int | None = None) -> Answer:
        """Answer one request, whatever protocol it came by (REST and gRPC share this)."""
        sm = self.served(name)
        if min_epoch is not None and self.agent is not None:
            await self.agent.catch_up(sm, min_epoch)  # the caller saw it elsewhere
        item, channel = await self.slot(sm, selector, key, min_epoch)
        # Read with no await in between: the epoch `item` is served at (a fleet canary's
        # is its trial's; other canary, shadow and pinned versions are outside the fleet's
        # epochs: 0).
        share = sm.fleet_share
        epoch = sm.stable.epoch if item is sm.stable.current else \
            share.epoch if share is not None and item is share.item else 0
        rt = item.runtime
        try:
            check_signature(req, rt.inputs, rt.outputs, name)
        except BadRequest as exc:
            self.count_refused(sm, item.label, channel, exc)
            raise
        req_id = req.id or f"{self._id_prefix}{next(self._ids):016x}"
        label = sm.label_output(item)
        try:
            results = await self._run(sm, item, channel, req, label)
        except RuntimeError_:
            base = sm.stable.current
            if item is base or base is None:
                raise
            # A failing canary costs the caller nothing: answer from stable instead.
            tried = item
            item, channel, epoch = base, sm.cfg.ref, sm.stable.epoch
            label = sm.label_output(item)
            try:
                results = await self._run(sm, item, channel, req, label)
            except RuntimeError_:
                # Stable fails it too: the input is at fault, not the canary, whose
                # window must not count it (bad requests would roll a good one back).
                sm.window_of(tried.version.id).forgive_error()
                raise
        if label is not None and label in results:
            sm.remember(req_id, item.version, results[label].reshape(-1))
        self._mirror(sm, item, req, results)
        shown = {k: v for k, v in results.items() if not req.outputs or k in req.outputs}
        return Answer(name, str(item.version.number), req_id, shown, epoch)

    def count_refused(self, sm: ServedModel, version: str, channel: str,
                      exc: BadRequest) -> None:
        """A 400 is counted once, per model and version (kind bad_request)."""
        if not exc.counted:
            exc.counted = True
            self.metrics.errors.labels(sm.cfg.model, version, channel, "bad_request").inc()

    def refused(self, name: str, selector: str | None, exc: BadRequest) -> None:
        """Count a request refused before it reached a version (it did not parse): under
        the version it named, else the one the stable channel serves."""
        sm = self.models.get(name)
        if sm is None or exc.counted:
            return
        if selector is None:
            cur, channel = sm.stable.current, sm.cfg.ref
            version = cur.label if cur is not None else "none"
        else:  # a followed channel, else a version by number (labelled as slot() does)
            f = {f.ref: f for f in sm.followers()}.get(selector)
            if f is None:
                version = channel = "v" + selector.removeprefix("v")
            else:
                channel = f.ref
                version = f.current.label if f.current is not None else "none"
        self.count_refused(sm, version, channel, exc)

    def _hot(self, model: str, version: str, channel: str) -> _Hot:
        """The metric children of one (model, version, channel): labels() costs a lock
        and a tuple per call, and the gateway never removes a label set."""
        key = (model, version, channel)
        h = self._hots.get(key)
        if h is None:
            m = self.metrics
            h = self._hots[key] = _Hot(m.requests.labels(*key), m.latency.labels(*key),
                                       m.inflight.labels(model, version))
        return h

    def _inline(self, item: Loaded, inputs: dict[str, np.ndarray]) -> bool:
        """Run on the event loop when the runtime allows it and its recent calls took
        under INLINE_S with inputs this small: handing a call of a few microseconds to a
        thread and back costs far more than the call (and, on one core, only adds
        switches). Longer or larger calls go to the inference threads."""
        return item.predict_s < INLINE_S and getattr(item.runtime, "inline_safe", False) \
            and sum(a.size for a in inputs.values()) <= INLINE_ELEMENTS

    def _timed(self, item: Loaded, inputs: dict[str, np.ndarray],
               wanted: list[str]) -> dict[str, np.ndarray]:
        t0 = time.thread_time()  # CPU time: a thread preempted meanwhile is no slower
        try:
            return item.runtime.predict(inputs, wanted)
        finally:
            dt = time.thread_time() - t0
            p = item.predict_s
            item.predict_s = dt if p == math.inf else p + (dt - p) * 0.2

    def _predict_inline(self, item: Loaded, inputs: dict[str, np.ndarray],
                        wanted: list[str]) -> dict[str, np.ndarray]:
        item.calls += 1
        if item.calls & SAMPLE_EVERY:  # thread_time is a syscall (~1 us): sampled
            return item.runtime.predict(inputs, wanted)
        return self._timed(item, inputs, wanted)

    async def _run(self, sm: ServedModel, item: Loaded, channel: str, req: InferRequest,
                   label: str | None) -> dict[str, np.ndarray]:
        # The label output is needed for feedback and drift even when not asked for.
        wanted = req.outputs
        if req.outputs and label and label not in req.outputs:
            wanted = [*req.outputs, label]
        hot = self._hot(sm.cfg.model, item.label, channel)
        # On the loop the call holds it throughout: nothing can read an in-flight gauge
        # raised and lowered around it, so only a call in a thread moves the gauge.
        inline = self._inline(item, req.inputs)
        self.pool.enter(item)
        if not inline:
            hot.inflight.inc()
        t0 = time.perf_counter()
        ok, internal, results = False, False, {}
        try:
            if inline:
                results = self._predict_inline(item, req.inputs, wanted)
            else:
                results = await asyncio.get_running_loop().run_in_executor(
                    self._infer, self._timed, item, req.inputs, wanted)
            ok = True
        except RuntimeError_ as exc:
            # A freed version reached: the gateway's own fault, not the model's
            internal = isinstance(exc, RuntimeClosed)
            self.metrics.errors.labels(sm.cfg.model, item.label, channel,
                                       "internal" if internal else "model").inc()
            raise
        finally:
            dt = time.perf_counter() - t0
            if not inline:
                hot.inflight.dec()
            self.pool.leave(item)
            hot.requests.inc()
            t = sm.totals_of(item.version.id)
            t.number = item.version.number
            t.requests += 1
            t.errors += not ok
            ns = int(dt * 1e9)
            if ok:
                t.success_ns += ns
                first = next(iter(req.inputs.values()), None)
                t.inferences += int(first.shape[0]) if first is not None and first.ndim else 1
            else:
                t.fail_ns += ns
            t.last_ms = int(time.time() * 1000)
            labels = results.get(label) if label else None
            if not internal:  # (the canary window judges the version: not the gateway)
                sm.window_of(item.version.id).record(ok, dt, labels.reshape(-1)
                                                     if labels is not None else None)
        hot.latency.observe(dt)
        return results

    def _mirror(self, sm: ServedModel, item: Loaded, req: InferRequest,
                results: dict[str, np.ndarray]) -> None:
        target = sm.shadow.current if sm.shadow else None
        stats = sm.shadow_stats
        if target is None or target is item or stats.pending >= MAX_SHADOW_BACKLOG:
            return
        stats.pending += 1
        self.pool.enter(target)

        async def run() -> None:
            try:
                got = await asyncio.get_running_loop().run_in_executor(
                    self._infer, target.runtime.predict, req.inputs, list(results))
                sm.compare_shadow(results, got)
                self.metrics.shadow.labels(sm.cfg.model, target.label).inc()
                s = sm.shadow_stats
                self.metrics.shadow_agreement.labels(sm.cfg.model, target.label).set(
                    s.agreeing / s.compared)
            except RuntimeError_:
                stats.errors += 1
            finally:
                stats.pending -= 1
                self.pool.leave(target)

        task = asyncio.create_task(run())
        self._mirrors.add(task)  # a strong reference until it finishes
        task.add_done_callback(self._mirrors.discard)

    def feedback(self, name: str, body: Any) -> dict[str, Any]:
        """Record the true label(s) of an answered request; live accuracy follows."""
        sm = self.served(name)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not (
                "label" in body or "labels" in body):
            raise BadRequest('feedback must be {"id": "<request id>", "label": <int>} '
                             '(or "labels": [...] for a batch)')
        seen = sm.predictions.get(body["id"])
        if seen is None:
            raise NotFound(f"no prediction with id {body['id']!r} (the last "
                           f"{len(sm.predictions)} are kept)")
        version, packed = seen
        if not packed:  # one label per answer: a repeat would count it twice
            raise Conflict(f"feedback for request {body['id']!r} was already recorded",
                           hint="send each request's label once (request ids must be "
                                "unique: the gateway makes one when a request has none)")
        predicted = np.frombuffer(packed, "<i8")
        truth = body.get("labels", body.get("label"))
        try:
            true = np.asarray(truth, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"label must be an integer or a list of integers, got {truth!r}"
                             ) from exc
        if true.size != predicted.size:
            raise BadRequest(f"request {body['id']!r} predicted {predicted.size} labels; "
                             f"feedback has {true.size}")
        right = int((predicted.astype(np.int64) == true).sum())
        sm.predictions[body["id"]] = (version, b"")  # answered: kept, marked
        w = sm.window_of(version.id)
        w.add_feedback(right, int(true.size))
        number = version.number
        m = self.metrics
        m.feedback.labels(sm.cfg.model, f"v{number}", "true").inc(right)
        m.feedback.labels(sm.cfg.model, f"v{number}", "false").inc(int(true.size) - right)
        acc = w.accuracy()
        if acc is not None:
            m.accuracy.labels(sm.cfg.model, f"v{number}").set(float(acc))
        return {"id": body["id"], "version": number, "correct": right, "total": int(true.size)}

    def status(self, since: float | None = None) -> dict[str, Any]:
        """Per served model; window statistics only from slots that began at or after
        `since` (a `clock` reading of an earlier status), else over the whole window."""
        ident = self.identity.describe()
        return {name: sm.status(since) | {"identity": ident}
                for name, sm in self.models.items()}


def http_status(exc: Exception) -> int:
    if isinstance(exc, ModelvcError):
        return exc.http_status
    return int(getattr(exc, "status", 500))
