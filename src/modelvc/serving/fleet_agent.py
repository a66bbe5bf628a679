"""The gateway side of a fleet: register, heartbeat, and switch only when told.

A deployment row is the desired state; this agent makes the gateway's stable slot match it:

- STAGE (state "staging", pending version at pending_epoch): load and warm the version
  without serving it, then report "staged" (or "failed" with the reason);
- FLIP (the deployment's epoch moved past ours): install the staged version (or the
  still-warm previous one, for a rollback) in one assignment; the old one stays warm;
- ABORT (the pending epoch went away uncommitted): drop the staged version;
- SHARE (a canary by share of traffic: the row's `share` is F, see fleet.canary): the
  pending version is staged first, as for a FLIP (state "staging"); once every member
  holds it the controller makes the share live (state "rolling"), and each gateway answers
  F of the requests with it (sticky per request key) at the pending epoch, reported as
  state "canary"; at FLIP it becomes the stable version in one assignment (already
  warm), at ABORT it is dropped.

The epoch guarantee (a caller that sends back the newest epoch it saw is never answered
from an older one) rests on three rules:
- a row read from the database is applied only if no notification arrived while it was
  read: a poll that started before a change at the same epoch (stage, share, state) must
  not undo it (notifications come in commit order, so one that arrived is as new);
- nobody serves an epoch before every member holds its version: a FLIP commits only what
  every member staged, and a share goes live only once every member staged it; so a
  gateway that staged the caller's epoch serves it at once (`catch_up`);
- a caller that saw an epoch this gateway has not heard of (its notification is late:
  an abort, a flip) makes it read the deployment before answering (the only time a
  request waits on the database: when the caller proves the gateway is behind).

Every decision is taken in the event loop from the last deployment seen, so it does not
matter whether it arrived by NOTIFY, by polling, or after a reconnect. The data path
waits on the database only for a caller that proves the gateway behind (above): if the
registry is unreachable the gateway keeps serving what it serves and catches up when it
can.
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
from ..fleet.canary import share_live, share_of
from ..fleet.notify import Listener, is_postgres, with_net_timeouts
from ..meta.fleet import DEPLOY_CHANNEL
from ..meta.store import MetaStore
from .config import FleetConfig
from .gateway import Gateway, NotReady
from .served import FleetShare, ServedModel
from .swap import Loaded

log = logging.getLogger("modelvc.fleet")
T = TypeVar("T")
# A load that failed is retried after 1, 2, 4 ... 30 s, not on every look (a version
# that cannot load here must not make the replica hammer the store and its CPU).
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# A caller that saw a newer epoch waits at most this long for this gateway to catch up
# (a read of the deployment, then a switch to a warm version: normally milliseconds);
# then it is answered 503 rather than from an older epoch.
CATCH_UP_WAIT = 10.0


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
        self._notes: dict[str, int] = {}  # served name -> notifications applied
        self._next_read: dict[str, asyncio.Future[bool]] = {}  # served name -> read to come
        self._reading: set[str] = set()  # served names with a reader task
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
                                      self._reconnected).start()
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
            await self._poke(sm)

    async def _poke(self, sm: ServedModel) -> bool:
        """Read the deployment and reconcile, unless a notification arrived meanwhile:
        this read may have begun before that change (at the same epoch: a stage, a
        share going live), and notifications come in commit order, so the one applied
        is at least as new (a change after it sends its own)."""
        notes = self._notes.get(sm.cfg.name, 0)
        d = await self._find(sm)
        if self._notes.get(sm.cfg.name, 0) != notes:
            return False
        if d is not None:  # (None: no deployment, or the database did not answer)
            self.reconcile(sm, d)
        return True

    def _reconnected(self) -> None:
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
                self._notes[sm.cfg.name] = self._notes.get(sm.cfg.name, 0) + 1
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
            if not self._holds(sm, d.pending_epoch) and \
                    self._may_load(name, d.pending_epoch):
                self._spawn(self._stage(sm, d.pending_id, d.pending_epoch))
        elif staged is not None and not self._wanted_share(sm, d, staged):
            self.staged.pop(name)  # aborted or superseded: drop it
            self.gw.pool.release(staged[1])
            self.state[name] = "serving"
            self._report(sm)
        self._reconcile_share(sm, d)

    def _wanted_share(self, sm: ServedModel, d: Deployment, staged: tuple[int, Loaded]
                      ) -> bool:
        """`staged` is what the live share of `d` serves (it moves to the share slot)."""
        return share_live(d) is not None and d.pending_epoch == staged[0] and \
            d.pending_id == staged[1].version.id and staged[0] > sm.stable.epoch

    def _reconcile_share(self, sm: ServedModel, d: Deployment) -> None:
        """While a share trial runs, serve its staged version to the share once it is
        live; drop it once the epoch is flipped (it is the stable version now) or
        aborted."""
        name, share = sm.cfg.name, share_of(d)
        want = (d.pending_id, d.pending_epoch) if share is not None and \
            d.pending_epoch is not None and d.pending_epoch > sm.stable.epoch else None
        cur = sm.fleet_share
        if cur is not None and (want is None or (cur.item.version.id, cur.epoch) != want):
            self._drop_share(sm)
            cur = None
        live = share_live(d)
        if want is None or live is None:
            return  # no trial, or still staging (reconcile stages it)
        vid, epoch = want
        assert vid is not None and epoch is not None
        staged = self.staged.get(name)
        if cur is not None:  # (served early to callers of its epoch: see catch_up)
            cur.percent = 100 * live
            self._serving_share(sm)
        elif staged is not None and self._wanted_share(sm, d, staged):
            del self.staged[name]
            sm.fleet_share = FleetShare(staged[1], 100 * live, epoch)
            self._serving_share(sm)
        elif self._may_load(name, epoch):  # a late member: load it now
            self._spawn(self._stage(sm, vid, epoch))

    def _serving_share(self, sm: ServedModel) -> None:
        name, cur = sm.cfg.name, sm.fleet_share
        assert cur is not None
        if self.state.get(name) == "canary":
            return
        self.state[name], self.error[name] = "canary", None
        log.info("fleet: %s serves %s to %.1f%% of requests at epoch %d", name,
                 cur.item.label, cur.percent, cur.epoch)
        self._report(sm)

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

    # --- callers that saw a newer epoch elsewhere
    async def catch_up(self, sm: ServedModel, epoch: int) -> None:
        """A caller saw `epoch` served elsewhere (it sends it back): never answer it from
        an older one. If we staged that epoch, it is committed or (a share trial) its
        share is live, and only our notification is late: serve it now. If we have not
        heard of it, read the deployment now and switch (to a warm version: at once);
        503 if that takes longer than CATCH_UP_WAIT. An epoch the deployment does not
        owe this gateway (another replica's rolling batch, or a made-up one) changes
        nothing."""
        name = sm.cfg.name
        end: float | None = None
        while not self._serves(sm, epoch):
            staged = self.staged.get(name)
            if staged is not None and staged[0] == epoch and epoch > sm.stable.epoch:
                del self.staged[name]
                d = self.deploy.get(name)
                if d is not None and share_of(d) is not None and d.pending_epoch == epoch:
                    # its callers only, until the row makes the share live
                    sm.fleet_share = FleetShare(staged[1], 0.0, epoch)
                    self._report(sm)
                else:
                    self._flip(sm, staged[1], epoch)
                return
            if end is None:
                end = time.monotonic() + CATCH_UP_WAIT
            elif time.monotonic() > end:
                raise NotReady(f"{name}: this gateway is still switching to epoch {epoch} "
                               f"(serving {sm.stable.epoch}); retry")
            if epoch > self._known(sm):
                if await self._fresh(sm) and epoch > self._known(sm):
                    return  # the deployment never had it: not ours to serve
            elif not self._owes(sm, epoch):
                return
            else:
                await asyncio.sleep(0.01)  # switching (a load): wait for it

    def _serves(self, sm: ServedModel, epoch: int) -> bool:
        share = sm.fleet_share
        return sm.stable.epoch >= epoch or (share is not None and share.epoch >= epoch)

    def _known(self, sm: ServedModel) -> int:
        """The newest epoch of the newest deployment row seen (served or pending)."""
        d = self.deploy.get(sm.cfg.name)
        return 0 if d is None else max(d.epoch, d.pending_epoch or 0)

    def _owes(self, sm: ServedModel, epoch: int) -> bool:
        """The newest row seen has this gateway serve `epoch` (or newer)."""
        d = self.deploy.get(sm.cfg.name)
        if d is None:
            return False
        return d.target(self.replica_id)[1] >= epoch or (
            share_live(d) is not None and (d.pending_epoch or 0) >= epoch)

    async def _fresh(self, sm: ServedModel) -> bool:
        """A read of the deployment that begins after this call (callers that wait
        together share the next one; one read at a time per model). True if it was
        applied (see `_poke`)."""
        name = sm.cfg.name
        fut = self._next_read.get(name)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._next_read[name] = fut
            if name not in self._reading:
                self._spawn(self._reader(sm))
        return await asyncio.shield(fut)

    async def _reader(self, sm: ServedModel) -> None:
        name = sm.cfg.name
        self._reading.add(name)
        try:
            while (fut := self._next_read.pop(name, None)) is not None:
                applied = False
                try:
                    applied = await self._poke(sm)  # begins after every waiter of fut came
                finally:
                    if not fut.done():
                        fut.set_result(applied)
        finally:
            self._reading.discard(name)

    async def _load(self, sm: ServedModel, vid: str, epoch: int) -> Loaded | None:
        name = sm.cfg.name
        self._busy.add((name, epoch))
        try:
            pool = self.gw.pool
            v = await pool.call(lambda: pool.reg.version(vid))
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
        """Load and warm `vid` for `epoch` without serving it; then it goes where the
        newest row wants it: the stable slot (committed meanwhile: a late member),
        staged, and on to the share slot if that share is live."""
        name = sm.cfg.name
        self.state[name], self.attempt[name] = "staging", epoch
        self._report(sm)
        item = await self._load(sm, vid, epoch)
        if item is None:
            return
        d = self.deploy[name]
        if d.epoch >= epoch and d.version_id == vid and sm.stable.epoch < epoch:
            self._flip(sm, item, d.epoch)
        elif sm.stable.epoch < epoch and not self._holds(sm, epoch) and (
                (d.state == "staging" and d.pending_epoch == epoch)
                or self._wanted_share(sm, d, (epoch, item))):
            self.staged[name] = (epoch, item)
            self.state[name], self.error[name] = "staged", None
            self._report(sm)
            self._reconcile_share(sm, d)
        else:
            self.gw.pool.release(item)  # aborted meanwhile
            if self.state.get(name) == "staging":
                self.state[name] = "serving"
                self._report(sm)

    def _holds(self, sm: ServedModel, epoch: int) -> bool:
        """A version for `epoch` is staged or in the share slot already."""
        staged, share = self.staged.get(sm.cfg.name), sm.fleet_share
        return (staged is not None and staged[0] == epoch) or (
            share is not None and share.epoch == epoch)

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
