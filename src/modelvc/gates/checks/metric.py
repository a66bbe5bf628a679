"""Metric thresholds and non-regression against the channel's current version."""

from __future__ import annotations

from typing import Any

from ...records import GateResult
from ..context import RunContext
from ..expr import Expr
from ..policy import Gate


def number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


def check_expr(ctx: RunContext, gate: Gate, e: Expr, kind: str = "metric") -> GateResult:
    value = number(ctx.metrics.get(e.metric))
    if value is None:
        have = ", ".join(sorted(ctx.metrics)) or "none"
        return GateResult(kind, e.text, False, ctx.metrics.get(e.metric), e.text,
                          f"{ctx.label} has no numeric metric {e.metric!r} (metrics: {have}); "
                          "record it at commit (--metric) or produce it with an eval gate",
                          gate.line)
    threshold = e.threshold()
    ok = e.check(value)
    where = _source(ctx, e.metric, value)
    why = "" if ok else f"{e.metric} = {value:g}, needs {e.op} {threshold:g}"
    return GateResult(kind, e.text, ok, value, f"{e.op} {threshold:g}",
                      "; ".join(x for x in (where, why) if x), gate.line)


def _source(ctx: RunContext, name: str, value: float) -> str:
    """'from eval' (and the recorded value it replaced) for a metric this run measured;
    '' for a recorded one."""
    gate = ctx.sources.get(name)
    if gate is None:
        return ""
    recorded = number(ctx.version.metrics.get(name))
    return f"from {gate}" + ("" if recorded is None or recorded == value
                             else f", recorded {recorded:g}")


def metric(ctx: RunContext, gate: Gate) -> list[GateResult]:
    return [check_expr(ctx, gate, e) for e in gate.exprs]


def regression(ctx: RunContext, gate: Gate) -> list[GateResult]:
    out = []
    for e in gate.exprs:
        if ctx.baseline is None:
            out.append(GateResult("regression", e.text, True, None, None,
                                  f"no current version on {ctx.channel}: nothing to regress "
                                  "against", gate.line))
            continue
        base_label = f"v{ctx.baseline.number}"
        value = number(ctx.metrics.get(e.metric))
        base = number(ctx.baseline_metrics.get(e.metric))
        if value is None or base is None:
            who = ctx.label if value is None else f"{ctx.channel} ({base_label})"
            out.append(GateResult(
                "regression", e.text, False, {"candidate": value, ctx.channel: base}, e.text,
                f"{who} has no numeric metric {e.metric!r} (recorded at commit or by an "
                f"earlier gate run on {ctx.channel}); record it, or promote with --force",
                gate.line))
            continue
        threshold = e.threshold(base)
        ok = e.check(value, base)
        out.append(GateResult(
            "regression", e.text, ok, value, f"{e.op} {threshold:g} ({base_label}: {base:g})",
            "" if ok else f"{e.metric} = {value:g} regresses against {ctx.channel} "
                          f"{base_label} ({base:g}): needs {e.op} {threshold:g}", gate.line))
    return out
