"""The gateway side of a fleet: register, heartbeat, and switch only when told.

A deployment row is the desired state; this agent makes the gateway's stable slot match it:

- STAGE (state "staging", pending version at pending_epoch): load and warm the version
  without serving it, then report "staged" (or "failed" with the reason);
- FLIP (the deployment's epoch moved past ours): install the staged version (or the
  still-warm previous one, for a rollback) in one assignment; the old one stays warm;
- ABORT (the pending epoch went away uncommitted): drop the staged version;
- SHARE (a canary by share of traffic: the row's `share` is F, see
  fleet.canary): load the pending version beside the stable one and answer F of the
  requests with it (sticky per request key) at the pending epoch, reported as state
  "canary" with the version staged for that epoch; at FLIP it becomes the stable
  version in one assignment (already warm), at ABORT it is dropped.

Every decision is taken in the event loop from the last deployment seen, so it does not
matter whether it arrived by NOTIFY, by polling, or after a reconnect. The data path
never waits on the database: if the registry is unreachable the gateway keeps serving
what it serves and catches up when it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..api.types import Deployment, Replica
from ..errors import UsageError
from ..meta.fleet import DEPLOY_CHANNEL
from ..meta.store import MetaStore
from ..serving.config import FleetConfig
from ..serving.gateway import Gateway
from ..serving.served import FleetShare, ServedModel
from ..serving.swap import Loaded
from .canary import share_of
from .notify import Listener, is_postgres, with_net_timeouts

log = logging.getLogger("modelvc.fleet")
T = TypeVar("T")
# A load that failed is retried after 1, 2, 4 ... 30 s, not on every look (a version
# that cannot load here must not make the replica hammer the store and its CPU).
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


class FleetAgent:
    def __init__(self, gw: Gateway, cfg: FleetConfig) -> None:
        self.gw, self.cfg = gw, cfg
        url = cfg.meta or gw.reg.layout.meta_url
        self.url = with_net_timeouts(url)
        self.push = is_postgres(url)
        self.replica_id = cfg.replica_id or f"{socket.gethostname()}-{gw.cfg.port}"
        if self.replica_id.startswith("*"):  # "*..." entries of `rolled` are not replicas
            raise UsageError(f"replica id {self.replica_id!r} may not start with '*'")
        self.address = cfg.advertise or f"http://{gw.cfg.host}:{gw.cfg.port}"
        self.meta: MetaStore | None = None
        self.deploy: dict[str, Deployment] = {}  # served name -> last deployment seen
        self.staged: dict[str, tuple[int, Loaded]] = {}  # served name -> (epoch, held)
        self.state: dict[str, str] = {}
        self.error: dict[str, str | None] = {}
        self.attempt: dict[str, int] = {}  # served name -> epoch last staged or tried
        self._busy: set[tuple[str, int]] = set()  # (served name, epoch) being loaded
        self._failed: dict[tuple[str, int], tuple[int, float]] = {}  # -> (times, retry at)
        self._tasks: set[asyncio.Task[None]] = set()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="modelvc-fleet")
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None

    # --- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.meta = await self._call(lambda: MetaStore.open(self.url))
        except Exception as exc:  # serve the channel anyway; join the fleet later
            log.warning("fleet: cannot reach the metadata database: %s", exc)
        for sm in self.gw.models.values():
            d = await self._find(sm)
            if d is not None and d.version_id is not None:
                await self._serve(sm, d.version_id, d.epoch)
            if sm.stable.current is None:
                await sm.stable.refresh()  # no deployment yet: what the channel says
            self.state[sm.cfg.name] = "serving"
            self._report(sm)
        if self.push:
            self._listener = Listener(self.url, [DEPLOY_CHANNEL], self._notified,
                                      self._poke).start()
        self._main = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._listener is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._listener.stop)
        for t in [self._main, *self._tasks]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        for _, item in self.staged.values():
            self.gw.pool.release(item)
        self.staged.clear()
        for sm in self.gw.models.values():
            self._drop_share(sm)
        self._db.shutdown(wait=False, cancel_futures=True)
        if self.meta is not None:
            self.meta.close()

    async def _call(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    # --- finding and watching deployments
    async def _find(self, sm: ServedModel) -> Deployment | None:
        if self.meta is None:
            return None
        meta, labels = self.meta, self.cfg.labels
        try:
            found: list[Deployment] = await self._call(
                lambda: meta.list_deployments(sm.cfg.model))
        except Exception as exc:
            log.warning("fleet: reading deployments: %s", exc)
            return None
        mine = [d for d in found if d.channel == sm.cfg.ref and d.selects(labels)]
        if len(mine) > 1:
            log.warning("fleet: %s matches several deployments %s; following %s",
                        sm.cfg.name, [d.name for d in mine], mine[0].name)
        return mine[0] if mine else None

    async def _watch(self) -> None:
        """Heartbeat and re-read: the safety net under notifications (and, on SQLite,
        the only way changes arrive, every poll interval)."""
        tick = self.cfg.heartbeat if self.push else min(self.cfg.heartbeat,
                                                        self.gw.cfg.poll_interval)
        since_beat = 0.0
        while True:
            await asyncio.sleep(tick)
            since_beat += tick
            if self.meta is None:
                with contextlib.suppress(Exception):
                    self.meta = await self._call(lambda: MetaStore.open(self.url))
            await self._poke_all()
            if since_beat >= self.cfg.heartbeat:
                since_beat = 0.0
                for sm in self.gw.models.values():
                    self._report(sm)

    async def _poke_all(self) -> None:
        for sm in self.gw.models.values():
            d = await self._find(sm)
            if d is not None:
                self.reconcile(sm, d)

    def _poke(self) -> None:
        """From the listener thread after (re)connecting: re-read everything."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._poke_all(), self._loop)

    def _notified(self, _channel: str, doc: dict[str, Any]) -> None:
        """From the listener thread: apply the payload without a query (fast path)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_payload, doc)

    def _apply_payload(self, doc: dict[str, Any]) -> None:
        for sm in self.gw.models.values():
            known = self.deploy.get(sm.cfg.name)
            if known is None:
                if doc.get("m") == sm.cfg.model:  # a new deployment may be ours
                    self._spawn(self._poke_all())
                continue
            if doc.get("d") != known.name:
                continue
            d = dataclasses.replace(known, epoch=int(doc["e"]), state=str(doc["s"]),
                                    version_id=doc.get("v"), pending_id=doc.get("p"),
                                    pending_epoch=doc.get("pe"), rolled=doc.get("r"),
                                    share=doc.get("sh"))
            if d.epoch >= known.epoch:
                self.reconcile(sm, d)

    # --- the state machine (event loop only)
    def reconcile(self, sm: ServedModel, d: Deployment) -> None:
        name, f = sm.cfg.name, sm.stable
        old = self.deploy.get(name)
        if old is not None and old.name == d.name and d.epoch < old.epoch:
            return  # a stale read
        self.deploy[name] = d
        vid, epoch = d.target(self.replica_id)
        if vid is not None and epoch > f.epoch:
            item = self._ready(sm, vid)
            if item is not None:
                self._flip(sm, item, epoch)
            elif self._may_load(name, epoch):  # late, our rolling batch, or its abort
                self._spawn(self._serve(sm, vid, epoch, rolling=d.strategy == "rolling"))
        staged = self.staged.get(name)
        # (a canary already serving the pending epoch has nothing to stage)
        if d.state == "staging" and d.pending_id and d.pending_epoch and \
                f.epoch < d.pending_epoch:
            if (staged is None or staged[0] != d.pending_epoch) and \
                    self._may_load(name, d.pending_epoch):
                self._spawn(self._stage(sm, d.pending_id, d.pending_epoch))
        elif staged is not None:  # aborted or superseded: drop it
            self.staged.pop(name)
            self.gw.pool.release(staged[1])
            self.state[name] = "serving"
            self._report(sm)
        self._reconcile_share(sm, d)

    def _reconcile_share(self, sm: ServedModel, d: Deployment) -> None:
        """Serve the pending version to the deployment's traffic share while its trial
        runs; drop it once the epoch is flipped (it is the stable version now) or
        aborted."""
        name, share = sm.cfg.name, share_of(d)
        want = (d.pending_id, d.pending_epoch) if share is not None and \
            d.pending_epoch is not None and d.pending_epoch > sm.stable.epoch else None
        cur = sm.fleet_share
        if cur is not None and (want is None or (cur.item.version.id, cur.epoch) != want):
            self._drop_share(sm)
            cur = None
        if want is None or share is None:
            return
        vid, epoch = want
        assert vid is not None and epoch is not None
        if cur is not None:
            cur.percent = 100 * share
        elif self._may_load(name, epoch):
            self._spawn(self._share(sm, vid, epoch))

    def _drop_share(self, sm: ServedModel) -> None:
        cur = sm.fleet_share
        if cur is None:
            return
        sm.fleet_share = None
        self.gw.pool.release(cur.item)
        name = sm.cfg.name
        if self.state.get(name) == "canary":
            self.state[name] = "serving"
        log.info("fleet: %s stops the canary share of %s", name, cur.item.label)
        self._report(sm)

    async def _share(self, sm: ServedModel, vid: str, epoch: int) -> None:
        name = sm.cfg.name
        self.state[name], self.attempt[name] = "staging", epoch
        self._report(sm)
        item = await self._load(sm, vid, epoch)
        if item is None:
            return
        d = self.deploy[name]
        share = share_of(d)
        if d.epoch >= epoch and d.version_id == vid and sm.stable.epoch < epoch:
            self._flip(sm, item, d.epoch)  # committed while we loaded (a late member)
        elif share is not None and (d.pending_id, d.pending_epoch) == (vid, epoch) and \
                sm.stable.epoch < epoch and sm.fleet_share is None:
            sm.fleet_share = FleetShare(item, 100 * share, epoch)
            self.state[name], self.error[name] = "canary", None
            log.info("fleet: %s serves %s to %.1f%% of requests at epoch %d", name,
                     item.label, 100 * share, epoch)
            self._report(sm)
        else:
            self.gw.pool.release(item)  # aborted meanwhile
            if self.state.get(name) == "staging":
                self.state[name] = "serving"
                self._report(sm)

    def _may_load(self, name: str, epoch: int) -> bool:
        """Not loading for this epoch already, nor backing off after a failure."""
        failed = self._failed.get((name, epoch))
        return (name, epoch) not in self._busy and (
            failed is None or time.monotonic() >= failed[1])

    def _ready(self, sm: ServedModel, vid: str) -> Loaded | None:
        """A warm, loaded copy of `vid` this slot may switch to without waiting."""
        staged = self.staged.get(sm.cfg.name)
        if staged is not None and staged[1].version.id == vid:
            del self.staged[sm.cfg.name]
            return staged[1]  # its hold passes to the slot
        share = sm.fleet_share.item if sm.fleet_share is not None else None
        for item in (share, sm.stable.current, sm.stable.previous):
            if item is not None and item.version.id == vid:
                item.holders += 1  # a second hold for the slot to own (Pool.hold, sync)
                return item
        return None

    def _flip(self, sm: ServedModel, item: Loaded, epoch: int) -> None:
        sm.stable.install(item, epoch)
        self.state[sm.cfg.name], self.error[sm.cfg.name] = "serving", None
        log.info("fleet: %s serves %s at epoch %d", sm.cfg.name, item.label, epoch)
        self._report(sm)

    def catch_up(self, sm: ServedModel, epoch: int) -> None:
        """A caller saw `epoch` served elsewhere, so it is committed: if it is the one we
        staged, flip now (a sticky client never sees the version go backwards)."""
        staged = self.staged.get(sm.cfg.name)
        if epoch > sm.stable.epoch and staged is not None and staged[0] == epoch:
            del self.staged[sm.cfg.name]
            self._flip(sm, staged[1], epoch)

    async def _load(self, sm: ServedModel, vid: str, epoch: int) -> Loaded | None:
        name = sm.cfg.name
        self._busy.add((name, epoch))
        try:
            pool = self.gw.pool
            v = await pool.call(lambda: pool.reg.meta.get_version(vid))
            item = await pool.hold(v)
            self._failed.pop((name, epoch), None)
            return item
        except Exception as exc:  # LoadFailed, or the registry is gone: report why
            times = self._failed.get((name, epoch), (0, 0.0))[0] + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (times - 1))
            # one epoch at a time matters: forget failures of older ones
            self._failed = {k: f for k, f in self._failed.items() if k[0] != name}
            self._failed[(name, epoch)] = (times, time.monotonic() + delay)
            self.state[name] = "failed"
            self.error[name] = (f"{type(exc).__name__}: {exc} (attempt {times}, "
                                f"next in {delay:g}s)")
            log.error("fleet: %s cannot load %s for epoch %d: %s", name, vid[:12], epoch, exc)
            self._report(sm)
            return None
        finally:
            self._busy.discard((name, epoch))

    async def _stage(self, sm: ServedModel, vid: str, epoch: int) -> None:
        name = sm.cfg.name
        self.state[name], self.attempt[name] = "staging", epoch
        self._report(sm)
        item = await self._load(sm, vid, epoch)
        if item is None:
            return
        d = self.deploy[name]
        if d.epoch >= epoch and d.version_id == vid and sm.stable.epoch < epoch:
            self._flip(sm, item, d.epoch)  # committed while we loaded (a late member)
        elif d.state == "staging" and d.pending_epoch == epoch:
            self.staged[name] = (epoch, item)
            self.state[name], self.error[name] = "staged", None
            self._report(sm)
        else:
            self.gw.pool.release(item)  # aborted meanwhile

    async def _serve(self, sm: ServedModel, vid: str, epoch: int, *, rolling: bool = False
                     ) -> None:
        if rolling:  # a fleet without room for two versions: unload first (unready meanwhile)
            self.state[sm.cfg.name], self.attempt[sm.cfg.name] = "staging", epoch
            sm.stable.close()
            self._report(sm)
        item = await self._load(sm, vid, epoch)
        if item is None:
            return
        d = self.deploy.get(sm.cfg.name)
        if sm.stable.epoch < epoch and (d is None or d.target(self.replica_id) == (vid, epoch)):
            self._flip(sm, item, epoch)
        else:
            self.gw.pool.release(item)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- reports
    def _report(self, sm: ServedModel) -> None:
        """Fire and forget (one DB thread, in order); a failure waits for the heartbeat."""
        if self.meta is None or self._loop is None:
            return
        f, name = sm.stable, sm.cfg.name
        staged = self.staged.get(name)
        if staged is None and sm.fleet_share is not None:  # loaded, warm, serving a share
            staged = (sm.fleet_share.epoch, sm.fleet_share.item)
        r = Replica(id=self.replica_id, model=sm.cfg.model, labels=dict(self.cfg.labels),
                    address=self.address,
                    serving_id=f.current.version.id if f.current else None, epoch=f.epoch,
                    warm_id=f.previous.version.id if f.previous else None,
                    staged_id=staged[1].version.id if staged else None,
                    staged_epoch=staged[0] if staged else self.attempt.get(name),
                    state=self.state.get(name, "starting"), error=self.error.get(name))
        meta = self.meta

        def send() -> None:
            try:
                meta.report_replica(r)
            except Exception as exc:
                log.warning("fleet: reporting to the registry: %s", exc)

        self._loop.run_in_executor(self._db, send)
