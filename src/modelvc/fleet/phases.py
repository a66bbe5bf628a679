"""The two-phase machinery every rollout strategy is built of: the live members of a
deployment, stage (phase one), flip (phase two: move the channel, commit the epoch,
verify), roll (the rolling strategy's batches), waiting on the replicas' reports (woken by
NOTIFY on PostgreSQL, polled on SQLite) and refusing a switch. The strategies themselves
are in `controller` (atomic, rolling) and `trial` (canary); the protocol is described at
the top of `controller`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from ..canary import Policy
from ..errors import UsageError
from ..meta.fleet import REPLICA_CHANNEL
from ..meta.rows import now
from ..records import Deployment, Replica
from ..registry import Registry
from .notify import Listener, is_postgres

STRATEGIES = ("atomic", "rolling", "canary")


@dataclass(frozen=True)
class Outcome:
    deployment: Deployment
    ok: bool  # every member serves the target
    reason: str
    seconds: float


class Phases:
    def __init__(self, reg: Registry, *, stage_timeout: float = 60.0,
                 verify_timeout: float = 10.0, stale: float = 5.0,
                 actor: str = "modelvc-deploy", batch: int = 1, canary_replicas: int = 1,
                 policy: Policy | None = None, strategy: str | None = None,
                 canary_share: float | None = None) -> None:
        if not hasattr(reg, "rollouts"):
            raise UsageError("modelvc deploy needs the registry's metadata database",
                             hint="open the registry by path (a server relay is planned)")
        if strategy is not None and strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
        if canary_share is not None and not 0 < canary_share < 1:
            raise UsageError(f"--canary-share must be between 0 and 1 (a fraction of "
                             f"requests), got {canary_share}")
        if canary_share is not None and strategy not in (None, "canary"):
            raise UsageError(f"--canary-share is the canary strategy, not {strategy}")
        self.reg, self.rollouts = reg, reg.rollouts
        self.stage_timeout, self.verify_timeout, self.stale = stage_timeout, verify_timeout, stale
        self.actor, self.batch = actor, max(1, batch)  # batch: replicas per rolling step
        self.canary_replicas = max(1, canary_replicas)
        # canary by share of traffic: every member serves the new version to this fraction
        # of requests (sticky per request key) instead of `canary_replicas` whole replicas
        self.canary_share = canary_share
        # this run's strategy instead of the deployment's (atomic <-> canary only; see
        # `strategy_for`); --canary-share alone means the canary strategy
        self.strategy = strategy or ("canary" if canary_share is not None else None)
        self.policy = policy or Policy()  # the canary's judge; its window bounds the trial
        self._changed = threading.Event()
        self._listener: Listener | None = None
        url = reg.rollouts.url
        if is_postgres(url):
            self._listener = Listener(url, [REPLICA_CHANNEL],
                                      lambda _c, _d: self._changed.set()).start()
            self._listener.connected.wait(5)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def members(self, d: Deployment) -> list[Replica]:
        """Live replicas the deployment selects (heartbeat within `stale` seconds)."""
        t = now()
        return [r for r in self.rollouts.list_replicas(d.model)
                if d.selects(r.labels) and r.heartbeat_at is not None
                and (t - r.heartbeat_at).total_seconds() <= self.stale]

    def stage(self, d: Deployment, vid: str) -> Deployment | Outcome:
        """Phase one alone: every member loads and warms `vid`. The staged deployment,
        or the aborted Outcome. `flip` finishes it (an operator may stage early and flip
        in a quiet minute)."""
        t0 = time.monotonic()
        members = self.members(d)
        if not members:
            raise UsageError(f"no live replica of {d.model} matches {d.selector or '{}'}",
                             hint="start gateways with --fleet and matching --label")
        ids = sorted(r.id for r in members)
        d = self.rollouts.begin_stage(d.name, d.epoch, vid, ids)
        epoch = d.epoch + 1
        why = self._wait(d, ids, self.stage_timeout, lambda r: _staged(r, vid, epoch),
                         fail=lambda r: r.state == "failed" and r.staged_epoch == epoch)
        if why is None:
            return d
        d = self.rollouts.abort_stage(d.name, d.epoch, why)
        return Outcome(d, False, why, time.monotonic() - t0)

    def flip(self, d: Deployment, move: Callable[[], object] | None = None, *,
             note: str = "") -> Outcome:
        """Phase two: move the channel (`move`), commit the epoch, verify. `note` is the
        reason recorded when every replica is in sync (the canary's verdict)."""
        t0 = time.monotonic()
        epoch, ids = d.epoch + 1, d.members
        try:
            if move is not None:
                move()
        except Exception as exc:  # the channel refused (gate, CAS): nobody switches
            why = f"moving {d.model}@{d.channel}: {exc}"
            d = self.rollouts.abort_stage(d.name, d.epoch, why)
            return Outcome(d, False, why, time.monotonic() - t0)
        d = self.rollouts.commit_flip(d.name, d.epoch, self.actor)
        late = self._wait(d, ids, self.verify_timeout, lambda r: r.epoch >= epoch)
        state = "done" if late is None else "converging"
        d = self.rollouts.set_deployment_state(d.name, epoch, state, late or note)
        return Outcome(d, late is None, late or note, time.monotonic() - t0)

    def roll(self, d: Deployment, vid: str) -> Deployment | Outcome:
        """Rolling strategy, for fleets without memory for two versions: `batch` members
        at a time unload, load `vid` and serve it at epoch+1 (versions are mixed until
        the last batch; a batch is unready while it loads). If one fails, the rollout
        aborts and every replica returns to the served version (at epoch+2)."""
        t0 = time.monotonic()
        ids = sorted(r.id for r in self.members(d))
        if not ids:
            raise UsageError(f"no live replica of {d.model} matches {d.selector or '{}'}")
        d = self.rollouts.begin_rolling(d.name, d.epoch, vid, ids)
        epoch = d.epoch + 1
        for i in range(0, len(ids), self.batch):
            part = ids[i:i + self.batch]
            d = self.rollouts.roll_batch(d.name, d.epoch, part)
            why = self._wait(d, part, self.stage_timeout,
                             lambda r: r.epoch >= epoch and r.serving_id == vid,
                             fail=lambda r: r.state == "failed" and r.staged_epoch == epoch)
            if why is not None:
                d = self.rollouts.abort_stage(d.name, d.epoch, why)
                return Outcome(d, False, why, time.monotonic() - t0)
        return d

    def _refuse(self, d: Deployment, vid: str, why: str, t0: float) -> Outcome:
        """Every replica back to the stable version (warm on the canaries: one switch) at
        epoch+2; the channel moves back if it names the refused version; reason recorded."""
        d = self.rollouts.abort_stage(d.name, d.epoch, why)
        if d.version_id is not None and \
                self.rollouts.get_ref(d.model, d.channel).version_id == vid:
            number = self.rollouts.get_version(d.version_id).number
            try:
                self.reg.rollback(d.model, d.channel, to=f"{d.model}@v{number}",
                                  actor=self.actor, reason=why)
                why += f"; {d.channel} moved back to v{number}"
            except Exception as exc:  # the fleet is safe either way; say what is left
                why += f"; {d.channel} still names the refused version: {exc}"
            d = self.rollouts.set_deployment_state(d.name, d.epoch, "aborted", why)
        late = self._wait(d, d.members, self.verify_timeout,
                          lambda r: r.epoch >= d.epoch and r.serving_id == d.version_id)
        return Outcome(d, False, why + (f" (still switching back: {late})" if late else ""),
                       time.monotonic() - t0)

    def _wait(self, d: Deployment, ids: list[str], timeout: float,
              ok: Callable[[Replica], bool],
              fail: Callable[[Replica], bool] = lambda r: False) -> str | None:
        """None once ok(r) holds for every member; else why not (failure, silence,
        timeout). Wakes on replica NOTIFYs, or polls every 10 ms on SQLite."""
        end = time.monotonic() + timeout
        while True:
            self._changed.clear()
            rows = {r.id: r for r in self.rollouts.list_replicas(d.model) if r.id in ids}
            t = now()
            waiting = []
            for rid in ids:
                r = rows.get(rid)
                if r is not None and ok(r):
                    continue
                if r is None:
                    return f"replica {rid} is gone"
                if fail(r):
                    return f"replica {rid} failed: {r.error}"
                assert r.heartbeat_at is not None
                if (t - r.heartbeat_at).total_seconds() > self.stale:
                    return f"replica {rid} stopped reporting ({r.state}, {r.address})"
                waiting.append(f"{rid} ({r.state})")
            if not waiting:
                return None
            if time.monotonic() > end:
                return f"timed out after {timeout:g}s waiting for {', '.join(waiting)}"
            self._changed.wait(0.2 if self._listener is not None else 0.01)


def _staged(r: Replica, vid: str, epoch: int) -> bool:
    return (r.staged_epoch == epoch and r.staged_id == vid) or r.epoch >= epoch
