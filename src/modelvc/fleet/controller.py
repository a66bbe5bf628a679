"""The rollout controller: `modelvc deploy` and the same in Python.

Atomic strategy (a two-phase switch, coordinated through the deployment row):
1. STAGE: `begin_stage` names the version and the next epoch; every member replica
   (live, selected by labels) loads and warms it and reports "staged".
2. If any member fails, stops heartbeating, or the stage times out: `abort_stage`, no
   replica switches, and the deployment's reason says which replica and why.
3. Otherwise move the channel (so it never names a version the fleet refused), then
   `commit_flip`: the commit point. Every replica switches on the NOTIFY (PostgreSQL)
   or its next poll (SQLite); one that misses it converges from the row later.
4. VERIFY: wait for every member to report the new epoch: "done", else "converging"
   with the replicas still behind.

Canary strategy: the first `canary_replicas` members serve the new version at epoch+1
(the rolling machinery's per-replica targets) while the rest keep the stable one; the
gateways' per-version statistics (errors, p95, predicted-label histograms, feedback),
counted from the trial's start on each gateway's own clock, are judged by the gateway
canary policy. A canary replica that dies, stops serving the version or stops answering
fails the trial at the next look. If it holds, the rest stage and flip at that same
epoch+1 as in the atomic strategy; if not, every replica returns to the stable version
(still warm on the canaries) at epoch+2 and the channel is moved back if it named the
refused version.

Canary by share of traffic (`canary_share`): instead of whole replicas, every member
stages the new version, then serves it to that fraction of requests (sticky per request
key) at epoch+1;
judged the same way, then every member promotes the warm canary at epoch+1 or drops it
and serves the stable version at epoch+2.

Strategies are stored per deployment; a controller's `strategy` overrides it for its
runs (atomic <-> canary). Every refused switch (aborted) is recorded in the audit trail
(fleet.refusals), so `deploy watch` remembers it across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api.types import Deployment, Replica
from ..canary import Decision, Policy
from ..errors import NotFound, UsageError
from ..meta.fleet import REPLICA_CHANNEL
from ..meta.rows import now
from ..registry import Registry
from . import refusals
from .canary import GatewayStats, judge, read_stats, share_of
from .notify import Listener, is_postgres

log = logging.getLogger("modelvc.fleet")
STRATEGIES = ("atomic", "rolling", "canary")
TRIAL_POLL = 0.25  # seconds between looks at the canaries' statistics
DEAD_AFTER_MISSES = 2  # a canary gateway that fails this many looks in a row is dead


@dataclass(frozen=True)
class Outcome:
    deployment: Deployment
    ok: bool  # every member serves the target
    reason: str
    seconds: float


class Controller:
    def __init__(self, reg: Registry, *, stage_timeout: float = 60.0,
                 verify_timeout: float = 10.0, stale: float = 5.0,
                 actor: str = "modelvc-deploy", batch: int = 1, canary_replicas: int = 1,
                 policy: Policy | None = None, strategy: str | None = None,
                 canary_share: float | None = None) -> None:
        if not hasattr(reg, "layout"):
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
        url = reg.layout.meta_url
        if is_postgres(url):
            self._listener = Listener(url, [REPLICA_CHANNEL],
                                      lambda _c, _d: self._changed.set()).start()
            self._listener.connected.wait(5)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- desired state
    def create(self, name: str, model: str, channel: str = "production", *,
               strategy: str = "atomic", selector: dict[str, str] | None = None
               ) -> Deployment:
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
        return self.reg.deployments.create(name, model=model, channel=channel,
                                           strategy=strategy, selector=selector)

    def members(self, d: Deployment) -> list[Replica]:
        """Live replicas the deployment selects (heartbeat within `stale` seconds)."""
        t = now()
        return [r for r in self.rollouts.list_replicas(d.model)
                if d.selects(r.labels) and r.heartbeat_at is not None
                and (t - r.heartbeat_at).total_seconds() <= self.stale]

    # --- moves
    def rollout(self, name: str, to: str | None = None, *, reason: str = "") -> Outcome:
        """Switch the fleet to `to` (NAME@vN or any ref; default: what the channel names),
        moving the channel at the commit point."""
        d = self.rollouts.get_deployment(name)
        ref = self.rollouts.get_ref(d.model, d.channel)
        if to is None:
            vid = ref.version_id
            if vid is None:
                raise NotFound(f"{d.model}@{d.channel} points nowhere")
        else:
            vid = self.reg.resolve(to if "@" in to else f"{d.model}@{to}").id

        def move() -> None:
            if self.rollouts.get_ref(d.model, d.channel).version_id != vid:
                number = self.rollouts.get_version(vid).number
                self.reg.promote(f"{d.model}@v{number}", d.channel, actor=self.actor,
                                 reason=reason or f"deployment {name}")

        return self._run(d, vid, move,
                         revision=ref.revision if ref.version_id == vid else None)

    def rollback(self, name: str, *, reason: str = "") -> Outcome:
        """One step back to the version served before (still warm on every replica)."""
        d = self.rollouts.get_deployment(name)
        if d.previous_id is None:
            raise UsageError(f"deployment {name!r} has no previous version to go back to")
        prev = self.rollouts.get_version(d.previous_id)

        def move() -> None:
            self.reg.rollback(d.model, d.channel, to=f"{d.model}@v{prev.number}",
                              actor=self.actor, reason=reason or f"deployment {name} rollback")

        return self._run(d, prev.id, move, judged=False)

    def switch(self, d: Deployment, vid: str, revision: int | None = None) -> Outcome:
        """Switch the fleet to `vid` without moving the channel (it already names `vid`,
        at `revision`: the path of `modelvc deploy watch`)."""
        return self._run(d, vid, None, revision=revision)

    def strategy_for(self, d: Deployment) -> str:
        """This run's strategy: the deployment's, or the controller's override. Only
        atomic and canary may stand in for each other: a rolling deployment's gateways
        unload the served version before loading the next (no room for two), which the
        other strategies need warm, and only a deployment created rolling does that."""
        want = self.strategy or d.strategy
        if want != d.strategy and "rolling" in (want, d.strategy):
            raise UsageError(
                f"deployment {d.name!r} is {d.strategy}: this rollout cannot be {want}",
                hint="atomic and canary may replace each other per rollout; rolling is "
                     "chosen at `deploy create` (its gateways unload before loading)")
        return want

    def _run(self, d: Deployment, vid: str, move: Callable[[], object] | None, *,
             judged: bool = True, revision: int | None = None) -> Outcome:
        """Run this rollout's strategy; a refused switch is recorded in the audit trail
        (`refusals`), with the channel's `revision` if the channel named `vid` there."""
        strategy = self.strategy_for(d)
        out = self._strategy(d, vid, move, strategy, judged)
        if not out.ok and out.deployment.state == "aborted":
            refusals.record(self.reg, d, vid, revision, out.reason, self.actor)
        return out

    def _strategy(self, d: Deployment, vid: str, move: Callable[[], object] | None,
                  strategy: str, judged: bool) -> Outcome:
        # Adopting a first version or going back to the still-warm previous one is not
        # judged: there is no stable version to compare with, or it is a rollback.
        if strategy == "canary" and judged and d.version_id is not None and \
                vid not in (d.version_id, d.previous_id):
            if self.canary_share is not None:
                return self.share_canary(d, vid, move)
            return self.canary(d, vid, move)
        staged = self.roll(d, vid) if strategy == "rolling" else self.stage(d, vid)
        return staged if isinstance(staged, Outcome) else self.flip(staged, move)

    def canary(self, d: Deployment, vid: str, move: Callable[[], object] | None) -> Outcome:
        """Canary strategy (see the module docstring). A fleet of one replica has nobody
        to compare with: it is switched atomically."""
        t0 = time.monotonic()
        ids = sorted(r.id for r in self.members(d))
        if len(ids) < 2:
            staged = self.stage(d, vid)
            return staged if isinstance(staged, Outcome) else self.flip(staged, move)
        stable = d.version_id
        assert stable is not None
        canaries, rest = ids[:min(self.canary_replicas, len(ids) - 1)], \
            ids[min(self.canary_replicas, len(ids) - 1):]
        marks = self._clocks(d, ids)  # before the canaries switch: the trial starts now
        d = self.rollouts.begin_rolling(d.name, d.epoch, vid, ids)
        epoch = d.epoch + 1
        d = self.rollouts.roll_batch(d.name, d.epoch, canaries)
        failed = lambda r: r.state == "failed" and r.staged_epoch == epoch  # noqa: E731
        why = self._wait(d, canaries, self.stage_timeout,
                         lambda r: r.epoch >= epoch and r.serving_id == vid, fail=failed)
        if why is not None:
            return self._refuse(d, vid, f"canary {', '.join(canaries)}: {why}", t0)
        verdict = self._trial(d, vid, stable, ids, canaries, marks,
                              lambda r: r.serving_id == vid and r.epoch >= epoch
                              and r.state != "failed")
        if verdict.action != "promote":
            return self._refuse(d, vid, f"canary on {', '.join(canaries)} rolled back: "
                                        f"{verdict.reason}", t0)
        d = self.rollouts.stage_rest(d.name, d.epoch)
        why = self._wait(d, rest, self.stage_timeout, lambda r: _staged(r, vid, epoch),
                         fail=failed)
        if why is not None:
            return self._refuse(d, vid, f"canary held, then {why}", t0)
        out = self.flip(d, move, note=f"canary on {', '.join(canaries)}: {verdict.reason}")
        return Outcome(out.deployment, out.ok, out.reason, time.monotonic() - t0)

    def share_canary(self, d: Deployment, vid: str, move: Callable[[], object] | None
                     ) -> Outcome:
        """Canary by share of traffic: every member loads `vid` beside the stable version
        and serves it to `canary_share` of requests (sticky per request key, the same
        keys on every gateway; a caller that sends back the canary's epoch stays on it)
        at epoch+1, while the rest of the requests get the stable version. The members'
        statistics of both versions are judged by the same policy; if the canary holds,
        every member switches its stable slot to the (warm) canary version at that same
        epoch+1, else every member drops it and serves the stable version at epoch+2.
        Works on a fleet of one. The share is the deployment row's `share`, so it reaches
        gateways by the same NOTIFY or poll; every member stages the version before the
        share goes live (`start_share`)."""
        t0 = time.monotonic()
        ids = sorted(r.id for r in self.members(d))
        if not ids:
            raise UsageError(f"no live replica of {d.model} matches {d.selector or '{}'}")
        stable = d.version_id
        assert stable is not None and self.canary_share is not None
        label = f"canary share {self.canary_share:.0%}"
        # Staged everywhere first: once one gateway serves the trial's epoch, a caller
        # that saw it may reach any other, which must then hold it too.
        d = self.rollouts.begin_stage(d.name, d.epoch, vid, ids, share=self.canary_share)
        epoch = d.epoch + 1
        failed = lambda r: r.state == "failed" and r.staged_epoch == epoch  # noqa: E731
        why = self._wait(d, ids, self.stage_timeout, lambda r: _staged(r, vid, epoch),
                         fail=failed)
        if why is None:
            marks = self._clocks(d, ids)  # before the share starts: the trial starts now
            d = self.rollouts.start_share(d.name, d.epoch)
            why = self._wait(d, ids, self.stage_timeout, lambda r: _sharing(r, vid, epoch),
                             fail=failed)
        if why is not None:
            return self._refuse(d, vid, f"{label}: {why}", t0)
        verdict = self._trial(d, vid, stable, ids, ids, marks,
                              lambda r: _sharing(r, vid, epoch), what="canary share")
        if verdict.action != "promote":
            return self._refuse(d, vid, f"{label} rolled back: {verdict.reason}", t0)
        # Every member holds the canary warm already: the flip needs no stage.
        out = self.flip(d, move, note=f"{label} on {', '.join(ids)}: {verdict.reason}")
        return Outcome(out.deployment, out.ok, out.reason, time.monotonic() - t0)

    def _clocks(self, d: Deployment, ids: list[str]) -> dict[str, float]:
        """Each member gateway's own clock now: its statistics are read from then on."""
        marks = {}
        for r in self.rollouts.list_replicas(d.model):
            if r.id in ids:
                got = read_stats(r.address)
                if isinstance(got, GatewayStats) and got.clock is not None:
                    marks[r.id] = got.clock
        return marks

    def _trial(self, d: Deployment, vid: str, stable: str, ids: list[str],
               canaries: list[str], marks: dict[str, float],
               carries: Callable[[Replica], bool], what: str = "canary") -> Decision:
        """Judge the canaries until the policy decides or its window ends (no verdict in
        a window is a rollback: a canary must earn the fleet). Stats of the stable version
        come from every member, of the canary version from the canaries (only they serve
        it), each counted from the trial's start on that gateway's clock (`marks`; a
        gateway that did not answer then is counted from its first answer). A canary
        replica that dies, stops answering (twice in a row) or no longer `carries` the
        trial (its row: serving the version, or its share) fails the trial at once."""
        end = time.monotonic() + self.policy.window
        misses: dict[str, int] = {}
        while True:
            rows = {r.id: r for r in self.rollouts.list_replicas(d.model) if r.id in ids}
            by_version: dict[str, list[dict[str, Any]]] = {}
            for rid in ids:
                r = rows.get(rid)
                if r is None:
                    continue
                got = read_stats(r.address, marks.get(rid))
                if isinstance(got, str):
                    misses[rid] = misses.get(rid, 0) + 1
                    if misses[rid] == 1:
                        log.warning("fleet: %s (%s) does not answer: %s", rid, r.address, got)
                    if rid in canaries and misses[rid] >= DEAD_AFTER_MISSES:
                        return Decision("rollback", f"canary replica {rid} died mid-trial: "
                                                    f"{r.address} does not answer ({got})")
                    continue
                misses[rid] = 0
                if rid not in marks:  # counted from now on
                    if got.clock is not None:
                        marks[rid] = got.clock
                    continue
                for v, stats in got.versions.items():
                    by_version.setdefault(v, []).append(stats)
            gone = self._canary_gone(rows, canaries, carries, what)
            if gone is not None:
                return Decision("rollback", gone)
            verdict = judge(self.policy, by_version, vid, stable)
            if verdict.action != "wait":
                return verdict
            if time.monotonic() > end:
                return Decision("rollback", f"no verdict within the {self.policy.window:g}s "
                                            f"canary window ({verdict.reason})")
            time.sleep(TRIAL_POLL)

    def _canary_gone(self, rows: dict[str, Replica], canaries: list[str],
                     carries: Callable[[Replica], bool], what: str) -> str | None:
        """Why a canary replica can no longer carry the trial (None: all still can)."""
        t = now()
        for rid in canaries:
            r = rows.get(rid)
            if r is None:
                return f"canary replica {rid} left the fleet mid-trial"
            assert r.heartbeat_at is not None
            age = (t - r.heartbeat_at).total_seconds()
            if age > self.stale:
                return (f"canary replica {rid} died mid-trial: no heartbeat for {age:.0f}s "
                        f"({r.address})")
            if not carries(r):
                return (f"canary replica {rid} stopped serving the {what} mid-trial "
                        f"(state {r.state}, epoch {r.epoch}"
                        + (f": {r.error}" if r.error else "") + ")")
        return None

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
        d = self.rollouts.commit_flip(d.name, d.epoch)
        late = self._wait(d, ids, self.verify_timeout, lambda r: r.epoch >= epoch)
        state = "done" if late is None else "converging"
        d = self.rollouts.set_deployment_state(d.name, epoch, state, late or note)
        return Outcome(d, late is None, late or note, time.monotonic() - t0)

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

    # --- status
    def status(self, name: str) -> dict[str, Any]:
        d = self.rollouts.get_deployment(name)
        numbers: dict[str, int] = {}

        def num(vid: str | None) -> int | None:
            if vid is None:
                return None
            if vid not in numbers:
                numbers[vid] = self.rollouts.get_version(vid).number
            return numbers[vid]

        t = now()
        reps = []
        for r in self.rollouts.list_replicas(d.model):
            if not d.selects(r.labels):
                continue
            age = (t - r.heartbeat_at).total_seconds() if r.heartbeat_at else None
            want_id, want_epoch = d.target(r.id)
            if r.epoch >= want_epoch and r.serving_id == want_id:
                why = "in sync"
            elif age is not None and age > self.stale:
                why = f"silent for {age:.0f}s: converges when it reports again"
            elif r.state == "failed":
                why = f"failed: {r.error}"
            else:
                why = f"behind (epoch {r.epoch} < {want_epoch}): switching"
            reps.append({"id": r.id, "address": r.address, "labels": r.labels,
                         "serving": num(r.serving_id), "epoch": r.epoch,
                         "warm": num(r.warm_id), "staged": num(r.staged_id),
                         "state": r.state, "error": r.error, "heartbeat_age": age,
                         "why": why})
        # The newest refusal while it stands: the channel still names the refused version
        # at the revision it was refused at (a watcher skips it until the channel moves).
        refused = refusals.latest(self.rollouts, d)
        if refused is not None:
            ref = self.rollouts.get_ref(d.model, d.channel)
            if (ref.version_id, ref.revision) != (refused.version_id, refused.revision):
                refused = None
        return {"name": d.name, "model": d.model, "channel": d.channel,
                "strategy": d.strategy, "selector": d.selector, "version": num(d.version_id),
                "previous": num(d.previous_id), "epoch": d.epoch,
                "pending": num(d.pending_id), "state": d.state, "reason": d.reason,
                "canary_share": share_of(d),
                "refused": refused.as_json() if refused is not None else None,
                "replicas": reps}


def _staged(r: Replica, vid: str, epoch: int) -> bool:
    return (r.staged_epoch == epoch and r.staged_id == vid) or r.epoch >= epoch


def _sharing(r: Replica, vid: str, epoch: int) -> bool:
    """The replica serves `vid` to its share of requests for the trial at `epoch` (the
    agent reports the canary version as staged for that epoch, state "canary")."""
    return r.state == "canary" and r.staged_id == vid and r.staged_epoch == epoch



