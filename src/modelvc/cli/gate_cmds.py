"""`modelvc gate run|show` and `modelvc policy apply|show|check`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .context import Ctx, json_option
from .output import emit, fit, when, width, wrap

if TYPE_CHECKING:
    from ..records import GateReport, GateResult


@click.group()
def gate() -> None:
    """Run a channel's gates on a version; show recorded runs."""


@gate.command("run")
@click.argument("ref")
@click.option("--channel", "-c", required=True, help="The channel to gate for, e.g. production.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="Gates from this file instead of the applied policy (the run counts for "
                   "promotion only if this file is the applied policy).")
@click.option("--data", help="Dataset path for eval gates (overrides their data:).")
@json_option
@click.pass_obj
def gate_run(ctx: Ctx, ref: str, channel: str, policy_file: str | None, data: str | None,
             as_json: bool) -> None:
    """Run CHANNEL's gates on version REF, record the report, exit 5 if any failed."""
    from ..errors import GateNotPassed
    from ..gates.policy import load_policy

    # Validated here (errors name the file's line), sent as text: over a server the
    # gates run there.
    text = load_policy(policy_file).body if policy_file else None
    report = ctx.registry().gates.run(ref, channel=channel, policy=text, data=data)
    emit(as_json, report, lambda: _print_report(report))
    if not report.passed:
        sys.exit(GateNotPassed.exit_code)


def _print_report(r: GateReport) -> None:
    click.echo(wrap(f"gates for {r.model}@v{r.number} ({r.version[:12]}) -> {r.channel}, "
                    f"policy {r.policy[:12]}", "  "))
    for res in r.results:
        click.echo(_line(res))
    n_failed = sum(1 for x in r.results if not x.passed)
    verdict = "PASSED" if r.passed else f"FAILED ({n_failed} of {len(r.results)} checks)"
    click.echo(wrap(f"{verdict} in {r.seconds:.1f} s; report {r.report_id[:12]}, "
                    f"run {r.run_id}", "  "))
    for note in r.notes:
        click.echo(wrap(note, "      ", "note: "))


INDENT = " " * 6  # under the check's name


def _line(res: GateResult) -> str:
    """One check: 'PASS  metric     accuracy >= 0.9  measured 0.95, expected >= 0.9
    (why)' on one line if it fits the terminal, else the name's line and the rest
    wrapped below it."""
    mark = "PASS" if res.passed else "FAIL"
    measured = _short(res.measured)
    expected = _short(res.expected)
    head = f"{mark}  {res.gate:<10} {res.name}"
    # "from eval[, recorded 0.95]; why": where the measured value came from goes with it.
    source, why = "", res.message
    if why.startswith("from "):
        source, _, why = why.partition("; ")
        source = f" ({source})"
    parts = []
    if measured != "-" or expected != "-":
        parts.append(f"measured {measured}{source}, expected {expected}")
    if why:
        parts.append(f"({why})")
    one = "  ".join([head, *parts])
    if len(one) <= width():
        return one
    return "\n".join([fit(head), *(wrap(p, INDENT, INDENT) for p in parts)])


def _short(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.4g}"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in list(x.items())[:6]) + "}"
    if isinstance(x, list):
        return "[" + ", ".join(_short(v) for v in x[:6]) + "]"
    return str(x)


@gate.command("show")
@click.argument("ref")
@click.option("--channel", "-c", help="Only runs for this channel.")
@click.option("--report", "full", is_flag=True, help="Print the newest run's full report.")
@json_option
@click.pass_obj
def gate_show(ctx: Ctx, ref: str, channel: str | None, full: bool, as_json: bool) -> None:
    """Recorded gate runs of version REF (oldest first)."""
    reg = ctx.registry()
    v = reg.resolve(ref)
    runs = reg.gates.runs(f"{v.model}@{v.id}", channel=channel)
    current = reg.gates.policy()
    applied = None
    if current is not None:
        from ..gates.policy import parse_policy

        applied = parse_policy(current.body, f"applied policy {current.digest[:12]}")
    if full:
        if not runs:
            emit(as_json, None, f"(no gate runs for {v.model}@v{v.number})")
            return
        data = reg.gates.report(f"{v.model}@{v.id}", run_id=runs[-1].id)
        emit(as_json, data, lambda: _print_stored(data))
        return

    def human() -> None:
        if not runs:
            click.echo(f"(no gate runs for {v.model}@v{v.number})")
        for r in runs:
            verdict = "PASSED" if r.passed else "FAILED"
            click.echo(fit(f"{r.id:>4} {when(r.at)} {r.channel:<12} {verdict} by {r.actor}"))
            click.echo(f"     policy {r.policy_digest[:12]}  report {r.report_id[:12]}")
            if applied is not None and not applied.counts(r, v.model):
                click.echo("     does not count: the channel's gates changed since")
            for name in r.summary.get("failed", []):
                click.echo(wrap(name, " " * 13, "     failed: "))

    emit(as_json, runs, human)


def _print_stored(d: dict[str, Any]) -> None:
    from datetime import datetime

    from ..records import GateResult

    try:
        at = when(datetime.fromisoformat(d["at"]))
    except (TypeError, ValueError):
        at = str(d["at"])
    click.echo(wrap(f"gates for {d['model']}@v{d['number']} ({d['version'][:12]}) -> "
                    f"{d['channel']}, policy {d['policy'][:12]}", "  "))
    click.echo(fit(f"  by {d['actor']} at {at}"))
    for x in d["results"]:
        click.echo(_line(GateResult(**x)))
    click.echo("PASSED" if d["passed"] else "FAILED")


@click.group()
def policy() -> None:
    """The promotion policy: roles, trust, gates per model and channel."""


@policy.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.pass_obj
def policy_apply(ctx: Ctx, file: str, as_json: bool) -> None:
    """Validate FILE and make it the registry's policy (admins only, once one has admins)."""
    from ..gates.policy import load_policy

    pol = load_policy(file)  # validated here: errors name the file's line
    change = ctx.registry().gates.apply_policy(pol.body, source=file)
    msg = (f"policy {change.digest[:12]} applied from {file}" if change.changed
           else f"policy {change.digest[:12]} is already applied")
    emit(as_json, {"digest": change.digest, "changed": change.changed}, msg)


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def policy_check(file: str, as_json: bool) -> None:
    """Validate FILE without applying it (errors name the line)."""
    from ..gates.policy import load_policy

    pol = load_policy(file)
    n = sum(len(chs) for chs in pol.rules.values())
    emit(as_json, {"digest": pol.digest, "valid": True},
         f"{file}: valid ({n} protected channels), digest {pol.digest[:12]}")


@policy.command("show")
@json_option
@click.pass_obj
def policy_show(ctx: Ctx, as_json: bool) -> None:
    """Print the applied policy as it was written."""
    current = ctx.registry().gates.policy()
    if current is None:
        emit(as_json, None, "no policy applied: every actor may promote and roll back")
        return
    emit(as_json, {"digest": current.digest, "body": current.body},
         lambda: click.echo(f"# policy {current.digest}\n{current.body.rstrip()}"))


def register(group: click.Group) -> None:
    group.add_command(gate)
    group.add_command(policy)
