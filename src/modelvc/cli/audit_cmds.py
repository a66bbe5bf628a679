"""`modelvc audit`: the hash-chained trail of every mutation."""

from __future__ import annotations

from typing import Any

import click

from .context import Ctx, json_option
from .output import columns, emit, fit, when, wrap
from .ref_cmds import _parse_time


@click.group(invoke_without_command=True)
@click.option("--model", help="Only this model.")
@click.option("--channel", help="Only moves of this channel (with --model).")
@click.option("--actor", help="Only this actor.")
@click.option("--action", help="Only this action (commit, promote, rollback, force, ...).")
@click.option("--since", help="From this time (ISO 8601).")
@click.option("--until", help="Up to this time (ISO 8601).")
@json_option
@click.pass_context
def audit(ctx: click.Context, model: str | None, channel: str | None, actor: str | None,
          action: str | None, since: str | None, until: str | None, as_json: bool) -> None:
    """Who changed what, when, from what, to what, and why."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Ctx = ctx.obj
    rows = obj.registry().audit(model=model, channel=channel, actor=actor, action=action,
                                since=_parse_time(since) if since else None,
                                until=_parse_time(until) if until else None)

    def human() -> None:
        if not rows:  # say so: an empty screen reads as a hang or a broken filter
            given = [f"--{k} {v}" for k, v in (("model", model), ("channel", channel),
                     ("actor", actor), ("action", action), ("since", since),
                     ("until", until)) if v]
            click.echo("no audit entries" + (f" match {' '.join(given)}" if given else ""),
                       err=True)
            if model and model not in (known := obj.registry().models()):
                from ..names import close_names

                near = close_names(model, known)
                click.echo(f"hint: no model {model!r} in this registry"
                           + (f"; did you mean {near[0]!r}?" if near else ""), err=True)
            return
        numbers = _numbers(obj, {r.model for r in rows if r.model})
        # The move (v1 -> v2) before the target, so a narrow terminal cuts a long
        # target's end, never which versions moved; the reason goes under its entry,
        # wrapped, whole (an actor longer than 20 is cut: --json has it).
        table = [(str(r.id), when(r.at), fit(r.actor, 20), r.action,
                  *_move(r.before, r.after, numbers.get(r.model or "", {})), r.target)
                 for r in rows]
        for r, line in zip(rows, columns(table, right=(0, 4)).splitlines(), strict=True):
            click.echo(fit(line))
            if note := _note(r):
                click.echo(wrap(note, " " * 6, " " * 6))

    emit(as_json, rows, human)


def _numbers(obj: Ctx, models: set[str]) -> dict[str, dict[str, int]]:
    """Each model's version numbers by id (a model deleted since: none, ids stay ids)."""
    from ..errors import ModelvcError

    out: dict[str, dict[str, int]] = {}
    for m in models:
        try:
            out[m] = {v.id: v.number for v in obj.registry().versions(m)}
        except ModelvcError:
            out[m] = {}
    return out


def _move(before: object, after: object, numbers: dict[str, int] | None = None
          ) -> tuple[str, str]:
    """('old', '-> new'): version numbers (vN), else ids (8 characters); '-' for none;
    ('', '') if no version moved."""
    old = before.get("version") if isinstance(before, dict) else None
    new = after.get("version") if isinstance(after, dict) else None
    if old is None and new is None:
        return "", ""

    def name(x: object) -> str:
        if not x:
            return "-"
        n = (numbers or {}).get(str(x))
        return f"v{n}" if n is not None else str(x)[:8]

    return name(old), f"-> {name(new)}"


def _note(r: Any) -> str:
    """The reason's first line; a gate run's verdict first: passed or failed (`modelvc
    gate show` names the failed checks; --json has them too)."""
    reason = (r.reason or "").split("\n", 1)[0]
    after = r.after if isinstance(r.after, dict) else {}
    if r.action != "gate" or "passed" not in after:
        return reason
    verdict = "passed" if after["passed"] else "failed"
    return f"{verdict}  {reason}".rstrip()


@audit.command("verify")
@json_option
@click.pass_obj
def audit_verify(ctx: Ctx, as_json: bool) -> None:
    """Re-compute the hash chain: any edited, removed or reordered entry is reported."""
    problems = ctx.registry().verify_audit()
    emit(as_json, {"ok": not problems, "problems": problems},
         "audit trail intact" if not problems else "\n".join(problems))
    if problems:
        raise SystemExit(6)


def register(group: click.Group) -> None:
    group.add_command(audit)
