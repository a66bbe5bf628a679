"""`modelvc audit`: the hash-chained trail of every mutation."""

from __future__ import annotations

import click

from .context import Ctx, json_option
from .output import columns, emit, when
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
            return
        table = [(str(r.id), when(r.at), r.actor, r.action, r.target, _move(r.before, r.after),
                  (r.reason or "").split("\n", 1)[0]) for r in rows]
        click.echo(columns(table, right=(0,)))

    emit(as_json, rows, human)


def _move(before: object, after: object) -> str:
    """'old -> new' version ids (8 characters; '-' for none), or '' if no version moved."""
    old = before.get("version") if isinstance(before, dict) else None
    new = after.get("version") if isinstance(after, dict) else None
    if old is None and new is None:
        return ""
    return f"{str(old)[:8] if old else '-':>8} -> {str(new)[:8] if new else '-'}"


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
