"""A gateway's followed channels and its canary automation: each followed ref polled
(a switch when it moves), the canary judged against stable by its policy, and the
channel promoted or rolled back as the configured identity; a refusal (roles, gates,
token) is recorded, shown in the status and retried with backoff."""

from __future__ import annotations

import asyncio
import logging
import time

from ..canary import decide
from ..errors import GateNotPassed, ModelvcError, PermissionDenied
from ..meta.api import VersionRow
from ..registry import Registry
from .follower import Follower
from .identity import Identity
from .metrics import Metrics
from .served import ServedModel, ShadowStats
from .swap import Pool

log = logging.getLogger("modelvc.serving")


class Following:
    """What a gateway lends its followers: the registry, its pool's threads, the
    identity that moves channels, the metrics that count the moves."""

    def __init__(self, reg: Registry, pool: Pool, identity: Identity, metrics: Metrics,
                 poll_interval: float) -> None:
        self.reg, self.pool, self.identity = reg, pool, identity
        self.metrics, self.poll_interval = metrics, poll_interval

    async def follow(self, sm: ServedModel, f: Follower) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                switched = await f.refresh()
                if switched and f is sm.shadow:
                    sm.shadow_stats = ShadowStats()  # agreement is per shadow version
                if switched and f is sm.canary and f.current is not None:
                    sm.blocked, sm.decision, sm.refusal = None, None, None
                    if f.current is not sm.stable.current:
                        sm.windows.pop(f.current.version.id, None)  # a fresh trial
                if f is sm.canary:
                    await self.judge(sm)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following: a database hiccup must not stop serving
                log.exception("following %s@%s", f.model, f.ref)

    async def preflight(self, sm: ServedModel) -> None:
        """Warn now (log, status) if the policy's roles would refuse the automatic moves."""
        cc = sm.cfg.canary
        if cc is None or not cc.auto:
            return
        ident, moves = self.identity, [("promote to", sm.cfg.ref), ("roll back", cc.ref)]
        try:
            why = await self.pool.call(lambda: ident.preflight(self.reg, sm.cfg.model, moves))
        except Exception as exc:  # the registry may be unreachable now: judge later
            log.warning("%s: could not check the canary's identity: %s", sm.cfg.name, exc)
            return
        sm.identity_warning = why
        if why is not None:
            log.warning("%s: automatic canary moves will be refused: %s", sm.cfg.name, why)

    async def judge(self, sm: ServedModel) -> None:
        cc, r = sm.cfg.canary, sm.refusal
        if cc is None or sm.canary is None:
            return
        base = sm.stable.current
        if r is not None and r.action == "promote" and base is not None and \
                base.version.id == r.version.id:
            sm.refusal = r = None  # promoted by someone else meanwhile
        if sm.blocked is not None:  # rolled back in traffic; the channel has yet to move
            if r is not None and r.action == "rollback" and r.version.id == sm.blocked and \
                    time.monotonic() >= r.retry_at:
                await self.move(sm, "rollback", r.version, r.target, r.reason)
            return
        live = sm.canary_live()
        if live is None or base is None:
            return
        d = decide(cc.policy, sm.window_of(live.version.id).evidence(),
                   sm.window_of(base.version.id).evidence())
        sm.decision = d
        if d.action == "wait" or not cc.auto:
            return
        if r is not None and (r.action, r.version.id) == (d.action, live.version.id) and \
                time.monotonic() < r.retry_at:
            return  # refused before: retried when its backoff ends
        model = sm.cfg.model
        reason = f"canary policy: {d.reason}"
        if d.action == "rollback":
            sm.blocked = live.version.id  # traffic to zero now; the ref follows
            await self.move(sm, "rollback", live.version, f"{model}@v{base.version.number}",
                             reason)
        elif await self.move(sm, "promote", live.version, f"{model}@v{live.version.number}",
                              reason):
            await sm.stable.refresh()  # already warm in the pool: switch now

    async def move(self, sm: ServedModel, action: str, version: VersionRow, target: str,
                    reason: str) -> bool:
        """Roll the canary channel back to `target`, or promote `target` to the stable
        channel, as the configured identity. A refusal (roles, gates, token) is logged,
        counted, shown in the status and retried later; True if the channel moved."""
        cc = sm.cfg.canary
        assert cc is not None
        model, ident = sm.cfg.model, self.identity
        channel = cc.ref if action == "rollback" else sm.cfg.ref
        actor: str | None = None

        def run() -> None:
            nonlocal actor
            actor = ident.actor_for(self.reg, model)
            if action == "rollback":
                self.reg.rollback(model, channel, to=target, reason=reason, actor=actor)
            else:
                self.reg.promote(target, channel, reason=reason, actor=actor)

        try:
            await self.pool.call(run)
        except Exception as exc:  # refused (roles, gates, token), or the registry failed
            if isinstance(exc, GateNotPassed | PermissionDenied):
                kind = "gates" if isinstance(exc, GateNotPassed) else "permission"
            else:
                kind = "error"  # e.g. the database is unreachable: retried the same way
            msg = exc.message if isinstance(exc, ModelvcError) else \
                f"{type(exc).__name__}: {exc}"
            r = sm.refuse(action, version, target, channel, reason, actor, msg, kind)
            self.metrics.refusals.labels(model, channel, action, kind).inc()
            if kind == "permission":
                sm.identity_warning = msg
            log.log(logging.ERROR if kind == "error" else logging.WARNING,
                    "%s: %s of v%d to %s@%s %s (attempt %d, retry in %.0fs): %s%s",
                    model, action, version.number, model, channel,
                    "FAILED" if kind == "error" else "REFUSED", r.attempts,
                    r.retry_at - time.monotonic(), msg,
                    " (traffic stays off the canary)" if action == "rollback" else "")
            return False
        sm.refusal = sm.identity_warning = None
        counter = self.metrics.rollbacks if action == "rollback" else self.metrics.promotions
        counter.labels(model, channel).inc()
        log.info("%s: %s v%d as %s (%s)", model, action, version.number, actor, reason)
        return True
