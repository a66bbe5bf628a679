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

from collections.abc import Callable
from typing import Any

from ..errors import Conflict, NotFound, UsageError
from ..meta.rows import now
from ..records import Deployment
from . import refusals
from .canary import share_of
from .phases import STRATEGIES, Outcome
from .trial import CanaryRuns

__all__ = ["STRATEGIES", "Controller", "Outcome"]


class Controller(CanaryRuns):
    """Rollouts of deployments: the public verbs (create, rollout, rollback, switch,
    status) and the choice of strategy; the phases are in `phases`, the canary trials
    in `trial`."""

    # --- desired state
    def create(self, name: str, model: str, channel: str = "production", *,
               strategy: str = "atomic", selector: dict[str, str] | None = None
               ) -> Deployment:
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
        return self.reg.deployments.create(name, model=model, channel=channel,
                                           strategy=strategy, selector=selector,
                                           actor=self.actor)

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
        (`refusals`), with the channel's `revision` if the channel named `vid` there.
        Runs under the deployment's lease: a switch left pending by a controller that
        stopped (Ctrl-C, kill -9) is dropped first (`_drop_interrupted`)."""
        with self.rollouts.lease(d.name) as held:
            if not held:
                raise Conflict(f"deployment {d.name!r} is being switched by another "
                               "controller", hint=f"wait for it; `modelvc deploy status "
                                                  f"{d.name}` shows its progress")
            d = self._drop_interrupted(self.rollouts.get_deployment(d.name))
            strategy = self.strategy_for(d)
            try:
                out = self._strategy(d, vid, move, strategy, judged)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM (interrupts.py): drop the switch
                self._drop_interrupted(self.rollouts.get_deployment(d.name),
                                       "interrupted by a signal before its commit point")
                raise
            if not out.ok and out.deployment.state == "aborted":
                refusals.record(self.reg, d, vid, revision, out.reason, self.actor)
            return out

    def _drop_interrupted(self, d: Deployment,
                          why: str = "its controller had stopped") -> Deployment:
        """With the lease held, a pending switch has no controller: it was interrupted
        (before its commit point: the commit is one transaction). Drop it as an abort
        does (every replica back on the served version at epoch+2; nobody ever served
        the pending epoch to a client who could then be sent back, canaries aside, which
        serve it as a canary does); not a refusal of the version."""
        if d.pending_id is None:
            return d
        number = self.rollouts.get_version(d.pending_id).number
        return self.rollouts.abort_stage(
            d.name, d.epoch, f"an interrupted rollout of v{number} ({d.state} at epoch "
                             f"{d.pending_epoch}) was dropped: {why}")

    def abort(self, name: str) -> Deployment:
        """Drop a switch an interrupted controller left pending (Conflict while a
        controller runs it; UsageError if nothing is pending)."""
        with self.rollouts.lease(name) as held:
            d = self.rollouts.get_deployment(name)
            if not held:
                raise Conflict(f"deployment {name!r} is being switched by a controller "
                               "that is still running", hint="stop that controller (Ctrl-C "
                                                             "ends it cleanly) or wait for it")
            if d.pending_id is None:
                raise UsageError(f"deployment {name!r} has no pending switch to abort "
                                 f"({d.state} at epoch {d.epoch})")
            return self._drop_interrupted(d)

    def running(self, name: str) -> bool:
        """Whether a controller holds deployment `name`'s lease (is switching it now)."""
        with self.rollouts.lease(name) as held:
            return not held

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
        ref = self.rollouts.get_ref(d.model, d.channel)
        if d.pending_id is None:
            pending = None
        elif self.running(name):
            pending = "a controller is switching it now"
        else:
            pending = (f"interrupted: its controller stopped; `modelvc deploy rollout "
                       f"{name}` drops it and rolls out what {d.channel} names "
                       f"(v{num(ref.version_id)}), `modelvc deploy abort {name}` only "
                       "drops it")
        refused = refusals.latest(self.rollouts, d)
        if refused is not None and \
                (ref.version_id, ref.revision) != (refused.version_id, refused.revision):
            refused = None
        # the channel moved and no switch follows it (a rollout interrupted after moving
        # it, or a promote nobody watches): say how the fleet catches up
        behind = None
        if d.pending_id is None and refused is None and ref.version_id is not None \
                and ref.version_id != d.version_id:
            behind = (f"{d.channel} names v{num(ref.version_id)}, the fleet serves "
                      f"v{num(d.version_id)}: `modelvc deploy rollout {name}` switches it")
        return {"name": d.name, "model": d.model, "channel": d.channel,
                "strategy": d.strategy, "selector": d.selector, "version": num(d.version_id),
                "previous": num(d.previous_id), "epoch": d.epoch,
                "pending": num(d.pending_id), "pending_epoch": d.pending_epoch,
                "pending_why": pending, "channel_ahead": behind,
                "state": d.state, "reason": d.reason,
                "canary_share": share_of(d),
                "refused": refused.as_json() if refused is not None else None,
                "replicas": reps}
