"""A fleet gateway's state machine: from the last deployment row seen, what each served
model's slots hold (stable, staged, the share of a canary trial), loading and warming
versions in the background with a back-off after failures. Event loop only; the
protocol is described at the top of `fleet_agent`, which feeds it rows and reports
its state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..fleet.canary import share_live, share_of
from ..records import Deployment
from .gateway import Gateway
from .served import FleetShare, ServedModel
from .swap import Loaded

log = logging.getLogger("modelvc.fleet")
# A load that failed is retried after 1, 2, 4 ... 30 s, not on every look (a version
# that cannot load here must not make the replica hammer the store and its CPU).
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


class Reconciler:
    def __init__(self, gw: Gateway, replica_id: str) -> None:
        self.gw, self.replica_id = gw, replica_id
        self.deploy: dict[str, Deployment] = {}  # served name -> last deployment seen
        self.staged: dict[str, tuple[int, Loaded]] = {}  # served name -> (epoch, held)
        self.state: dict[str, str] = {}
        self.error: dict[str, str | None] = {}
        self.attempt: dict[str, int] = {}  # served name -> epoch last staged or tried
        self._busy: set[tuple[str, int]] = set()  # (served name, epoch) being loaded
        self._failed: dict[tuple[str, int], tuple[int, float]] = {}  # -> (times, retry at)
        self._tasks: set[asyncio.Task[None]] = set()

    def _report(self, sm: ServedModel) -> None:
        """Tell the registry this replica's state of `sm` (FleetAgent: fire and forget)."""
        raise NotImplementedError

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
