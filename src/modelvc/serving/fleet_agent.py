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
from typing import Any

from ..errors import UsageError
from ..fleet.canary import share_live, share_of
from ..fleet.notify import Listener, is_postgres
from ..meta.fleet import DEPLOY_CHANNEL
from ..records import Deployment, Replica
from ..registry.rollouts import Rollouts
from .config import FleetConfig
from .fleet_reconcile import Reconciler
from .gateway import Gateway, NotReady
from .served import FleetShare, ServedModel

log = logging.getLogger("modelvc.fleet")
# A caller that saw a newer epoch waits at most this long for this gateway to catch up
# (a read of the deployment, then a switch to a warm version: normally milliseconds);
# then it is answered 503 rather than from an older epoch.
CATCH_UP_WAIT = 10.0


class FleetAgent(Reconciler):
    """Joins the fleet: finds this gateway's deployments, follows them (NOTIFY or
    polling, the state machine in `fleet_reconcile`), answers callers that saw a newer
    epoch (`catch_up`) and reports each served model's state."""

    def __init__(self, gw: Gateway, cfg: FleetConfig) -> None:
        replica_id = cfg.replica_id or f"{socket.gethostname()}-{gw.cfg.port}"
        if replica_id.startswith("*"):  # "*..." entries of `rolled` are not replicas
            raise UsageError(f"replica id {replica_id!r} may not start with '*'")
        super().__init__(gw, replica_id)
        self.cfg = cfg
        self.url = cfg.meta or gw.reg.rollouts.url
        self.push = is_postgres(self.url)
        self.address = cfg.advertise or f"http://{gw.cfg.host}:{gw.cfg.port}"
        # The fleet's view of the registry database: a connection of its own (network
        # timeouts), opened at start and again until the database answers.
        self.rollouts: Rollouts | None = None
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
            self.rollouts = await self._call(lambda: Rollouts.connect(self.url))
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
        if self.rollouts is not None:
            self.rollouts.close()

    async def _call(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    # --- finding and watching deployments
    async def _find(self, sm: ServedModel) -> Deployment | None:
        if self.rollouts is None:
            return None
        rollouts, labels = self.rollouts, self.cfg.labels
        try:
            found: list[Deployment] = await self._call(
                lambda: rollouts.list_deployments(sm.cfg.model))
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
            if self.rollouts is None:
                with contextlib.suppress(Exception):
                    self.rollouts = await self._call(lambda: Rollouts.connect(self.url))
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

    # --- reports
    def _report(self, sm: ServedModel) -> None:
        """Fire and forget (one DB thread, in order); a failure waits for the heartbeat."""
        if self.rollouts is None or self._loop is None:
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
        rollouts = self.rollouts

        def send() -> None:
            try:
                rollouts.report_replica(r)
            except Exception as exc:
                log.warning("fleet: reporting to the registry: %s", exc)

        self._loop.run_in_executor(self._db, send)
