"""The canary strategies: a few whole replicas serve the new version (`canary`), or every
member serves it to a share of requests (`share_canary`), while the gateways' statistics
are judged by the canary policy (`_trial`); see the module docstring of `controller`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..canary import Decision
from ..errors import UsageError
from ..meta.rows import now
from ..records import Deployment, Replica
from .canary import GatewayStats, judge, read_stats
from .phases import Outcome, Phases, _staged

log = logging.getLogger("modelvc.fleet")
TRIAL_POLL = 0.25  # seconds between looks at the canaries' statistics
DEAD_AFTER_MISSES = 2  # a canary gateway that fails this many looks in a row is dead


class CanaryRuns(Phases):
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


def _sharing(r: Replica, vid: str, epoch: int) -> bool:
    """The replica serves `vid` to its share of requests for the trial at `epoch` (the
    agent reports the canary version as staged for that epoch, state "canary")."""
    return r.state == "canary" and r.staged_id == vid and r.staged_epoch == epoch
