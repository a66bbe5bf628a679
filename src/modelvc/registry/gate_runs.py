"""Run a channel's gates on one version and record the result (Registry.gates.run).

Part of the embedded registry (it writes the report blob and the gate_runs row), so it
sits in the registry package; the gates themselves (gates/) see the version only through
the Registry API.

Eval gates run first (their metrics feed the thresholds), then budgets (their
measurements can be regression-checked too), then the rest; the report lists results in
policy order. The full report is a content-addressed blob; the gate_runs row (version id,
channel, policy digest, passed) is what promotion checks, and it is appended to the audit
trail in the same transaction.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..canonical import canonical_json
from ..errors import ModelvcError, UsageError
from ..gates.checks.budget import budget
from ..gates.checks.derived import derived
from ..gates.checks.evaluate import evaluate
from ..gates.checks.metric import metric, number, regression
from ..gates.checks.safety import safety
from ..gates.checks.signature import signature
from ..gates.context import RunContext
from ..gates.policy import Gate, Policy, applied_policy
from ..lineage import author, fingerprint
from ..meta.api import AuditEntry
from ..records import GateReport, GateResult, GateRun, finite
from .parts import RegistryParts

if TYPE_CHECKING:
    from ..api.protocol import RegistryAPI

CHECKS: dict[str, Callable[[RunContext, Gate], list[GateResult]]] = {
    "metric": metric, "regression": regression, "eval": evaluate, "budget": budget,
    "format": safety, "signature": signature, "derived": derived,
}
PHASE = {"eval": 0, "derived": 0, "budget": 1}  # everything else: 2


def run_gates(reg: RegistryParts, api: RegistryAPI, ref: str, channel: str, *,
              policy: Policy | None = None, data: str | None = None,
              actor: str | None = None) -> GateReport:
    """Run CHANNEL's gates on version REF, store the report in REG, and return it. The
    gates read through API: the same registry as REG."""
    v = reg.resolve(ref)
    applied = applied_policy(reg._meta)
    pol = policy or applied
    if pol is None:
        raise UsageError("no policy is applied to this registry",
                         hint="apply one with `modelvc policy apply FILE`, or pass --policy FILE")
    rule = pol.rule(v.model, channel)
    if rule is None:
        listed = ", ".join(pol.channels(v.model)) or "none"
        raise UsageError(f"the policy ({pol.source}) has no rules for {v.model}@{channel}",
                         hint=f"channels with rules for {v.model}: {listed}")
    who = actor or author()
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="modelvc-gate-"))
    try:
        ctx = RunContext(api, v, reg._manifest(v.id), channel, workdir, data,
                         metrics=dict(v.metrics))
        ctx.baseline, ctx.baseline_metrics = _baseline(reg, v.model, channel)
        order = sorted(range(len(rule.gates)), key=lambda i: PHASE.get(rule.gates[i].kind, 2))
        by_gate: dict[int, list[GateResult]] = {}
        for i in order:
            by_gate[i] = _run_one(ctx, rule.gates[i])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = [r for i in range(len(rule.gates)) for r in by_gate[i]]
    report = GateReport(
        v.model, v.id, v.number, channel, pol.digest,
        applied is not None and applied.digest == pol.digest, who, datetime.now(UTC),
        all(r.passed for r in results), results,
        {k: x for k, x in ctx.metrics.items() if (n := number(x)) is not None
         and math.isfinite(n)},
        ctx.baseline.id if ctx.baseline else None,
        fingerprint(Path(data)) if data and Path(data).exists() else None,
        time.perf_counter() - start)
    if not report.applied:
        report.notes.append("this policy is not the applied one: the run does not count "
                            "for promotion until it is applied (`modelvc policy apply`)")
    # Only a run under the applied policy may keep counting after it changes: a run
    # under a policy file nobody applied never counts (the notes say so).
    return _record(reg, report, pol.gates_digest(v.model, channel) if report.applied else None)


def _run_one(ctx: RunContext, gate: Gate) -> list[GateResult]:
    try:
        return CHECKS[gate.kind](ctx, gate)
    except ModelvcError as exc:
        return [GateResult(gate.kind, gate.kind, False, None, None, exc.message, gate.line)]
    except Exception as exc:  # a gate that crashes fails, with its reason in the report
        return [GateResult(gate.kind, gate.kind, False, None, None,
                           f"{type(exc).__name__}: {exc}", gate.line)]


def _baseline(reg: RegistryParts, model: str, channel: str) -> tuple[Any, dict[str, Any]]:
    """What the channel holds now, with its recorded metrics and those measured by its
    newest passed gate run on this channel (eval results, budget measurements)."""
    ref = reg._ref_or_none(model, channel)
    if ref is None or ref.version_id is None or ref.kind != "channel":
        return None, {}
    base = reg._meta.get_version(ref.version_id)
    metrics = dict(base.metrics)
    passed = [r for r in reg._meta.gate_runs(base.id, channel) if r.passed]
    if passed:
        metrics.update(passed[-1].summary.get("metrics", {}))
    return base, metrics


def _record(reg: RegistryParts, report: GateReport, gates_digest: str | None) -> GateReport:
    body = report.to_json()
    del body["report_id"], body["run_id"]  # not known until stored
    stored = reg._io.put_blob(canonical_json(body))
    report = replace(report, report_id=stored.row.id)
    failed = [f"{r.gate}: {r.name}" for r in report.results if not r.passed]
    summary = {"passed": report.passed, "failed": failed, "metrics": report.metrics,
               "baseline": report.baseline, "applied": report.applied,
               "results": [[r.gate, r.name, r.passed, _scalar(r.measured)]
                           for r in report.results]}
    if gates_digest is not None:
        summary["gates_digest"] = gates_digest
    target = f"{report.model}@{report.channel}"
    run = reg._meta.record_gate_run(
        version_id=report.version, channel=report.channel, policy_digest=report.policy,
        passed=report.passed, report_id=report.report_id, summary=summary,
        actor=report.actor,
        audit_entry=AuditEntry(actor=report.actor, action="gate", target=target,
                               model=report.model, before=None,
                               after={"version": report.version, "passed": report.passed,
                                      "report": report.report_id, "policy": report.policy,
                                      "failed": failed}))
    reg.events.after_mutation()
    return replace(report, run_id=run.id)


def _scalar(x: Any) -> Any:
    return finite(x) if isinstance(x, int | float | str | bool) or x is None else None


def read_report(reg: RegistryParts, run: GateRun) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(reg._io.read_blob(run.report_id))
    return data
