"""Gates, signatures and deployments as the pages show them (registry calls, no HTML).

The promote preview reads the applied policy and this version's gate runs and says, per
protected channel, what the registry will answer: the gates, the newest run under the
current policy and the checks it failed, and whether the viewer may move the channel.
The registry still decides at the click; this only explains beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ModelvcError
from ..gates.authority import failed_text
from ..gates.policy import Policy, parse_policy
from ..records import Deployment, GateRun, Replica, SignatureReport
from .port import UIRegistry

REPORTS = 5  # gate runs shown with their full evidence (newest first)
RUNS = 20
STALE_S = 5.0  # a gateway silent this long is not counted live (fleet.controller's default)


@dataclass
class RunView:
    run: GateRun
    current: bool  # it ran the gates the applied policy has for its channel
    report: dict[str, Any] | None  # the stored evidence (newest REPORTS runs)

    @property
    def failed(self) -> str:
        return failed_text(self.run.summary, limit=5)


@dataclass
class ChannelGate:
    channel: str
    gates: list[str]  # "metric: acc >= 0.9", ...
    may_move: bool
    promoters: list[str] | None  # None: anyone (the gates still apply)
    verdict: str  # what a promotion would hear now
    ok: bool


def _gate_text(kind: str, exprs: list[str], options: dict[str, Any]) -> str:
    if exprs:
        return f"{kind}: " + "; ".join(exprs)
    if options:
        return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in sorted(options.items())
                                       if k != "command")
    return kind


def _policy(reg: UIRegistry) -> Policy | None:
    info = reg.gates.policy()
    return parse_policy(info.body, "<applied policy>") if info else None


def version_governance(reg: UIRegistry, model: str, version_id: str, number: int,
                       viewer: str) -> dict[str, Any]:
    ref = f"{model}@{version_id}"
    pol = _policy(reg)
    runs = reg.gates.runs(ref)  # oldest first
    views: list[RunView] = []
    for i, r in enumerate(reversed(runs[-RUNS:])):
        report = None
        if i < REPORTS:
            try:
                report = reg.gates.report(ref, run_id=r.id)
            except ModelvcError:  # a report blob gone (gc'ed) still leaves the run row
                report = None
        views.append(RunView(r, pol is not None and pol.counts(r, model), report))
    preview: list[ChannelGate] = []
    if pol is not None:
        holding = {r.name for r in reg.refs(model, kind="channel") if r.version_id == version_id}
        for ch in pol.channels(model):
            rule = pol.rule(model, ch)
            if rule is None:
                continue
            gates = [_gate_text(g.kind, [e.text for e in g.exprs], g.options)
                     for g in rule.gates]
            allowed = rule.promoters if rule.promoters is not None else pol.promoters
            may = pol.may_move(viewer, rule)
            mine = [r for r in runs if r.channel == ch and pol.counts(r, model)]
            if ch in holding:  # nothing to promote: say so, not "refused"
                verdict, ok = f"{ch} holds v{number} now", True
            elif not may:
                verdict, ok = f"{viewer} may not move {ch}", False
            elif not rule.gates:
                verdict, ok = "no gates: a promotion is allowed", True
            elif not mine:
                verdict, ok = (f"no gate run for {ch} under the current policy: run "
                               f"`modelvc gate run {model}@v{number} --channel {ch}`"), False
            elif not mine[-1].passed:
                failed = failed_text(mine[-1].summary)
                verdict, ok = f"failed the {ch} gates (run {mine[-1].id}: {failed})", False
            else:
                verdict, ok = f"passed the {ch} gates (run {mine[-1].id})", True
            who = None if allowed is None else sorted(allowed | pol.admins)
            preview.append(ChannelGate(ch, gates, may, who, verdict, ok))
    sig: SignatureReport | None
    try:
        sig = reg.signatures.check(ref)
    except ModelvcError:
        sig = None
    return {"gate_runs": views, "preview": preview,
            "policy_digest": pol.digest if pol else None, "signatures": sig}


@dataclass
class GatewayView:
    replica: Replica
    live: bool
    age: float | None  # seconds since its last heartbeat
    serving: int | None  # version number
    canary: bool


@dataclass
class DeploymentView:
    d: Deployment
    version: int | None
    pending: int | None
    previous: int | None
    wants: int | None = None  # what the channel names now (the deployment follows it)
    gateways: list[GatewayView] = field(default_factory=list)

    @property
    def behind(self) -> bool:
        """The channel names a version the fleet neither serves nor is switching to."""
        return self.wants is not None and self.wants not in (self.version, self.pending)

    @property
    def verdict(self) -> str:
        d = self.d
        if d.state == "aborted":
            return f"rolled back: {d.reason}" if d.reason else "rolled back"
        if d.state in ("rolling", "staging") and d.pending_id:
            share = f" to {d.share:.0%} of traffic" if d.share else ""
            return f"trial of v{self.pending}{share}" if self.pending else "trial"
        if d.state in ("flipped", "done"):
            return "promoted" if d.previous_id else "serving"
        if d.state == "new":
            return "nothing rolled out yet"
        return d.state


def deployments(reg: UIRegistry, *, model: str | None = None,
                now: datetime | None = None) -> list[DeploymentView]:
    now = now or datetime.now(UTC)
    out: list[DeploymentView] = []
    replicas = reg.deployments.replicas(model=model)
    numbers: dict[str, dict[str, int]] = {}

    def num(m: str, vid: str | None) -> int | None:
        if vid is None:
            return None
        if m not in numbers:
            numbers[m] = {v.id: v.number for v in reg.versions(m)}
        return numbers[m].get(vid)

    channels: dict[str, dict[str, str | None]] = {}
    for d in sorted(reg.deployments.list(model=model), key=lambda d: d.name):
        if d.model not in channels:
            channels[d.model] = {r.name: r.version_id
                                 for r in reg.refs(d.model, kind="channel")}
        view = DeploymentView(d, num(d.model, d.version_id), num(d.model, d.pending_id),
                              num(d.model, d.previous_id),
                              num(d.model, channels[d.model].get(d.channel)))
        for r in sorted(replicas, key=lambda r: r.id):
            if r.model != d.model or not d.selects(r.labels):
                continue
            age = (now - r.heartbeat_at).total_seconds() if r.heartbeat_at else None
            view.gateways.append(GatewayView(
                r, age is not None and age <= STALE_S and r.state != "failed", age,
                num(d.model, r.serving_id), r.id in (d.rolled or ())))
        out.append(view)
    return out
