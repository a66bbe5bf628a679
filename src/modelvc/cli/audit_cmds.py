"""`modelvc audit`: the hash-chained trail of every mutation."""

from __future__ import annotations

import click

from .main import Ctx, json_option
from .output import emit, when
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
        for r in rows:
            before = (r.before or {}).get("version") if isinstance(r.before, dict) else None
            after = (r.after or {}).get("version") if isinstance(r.after, dict) else None
            move = f" {str(before)[:8]} -> {str(after)[:8]}" if before or after else ""
            why = f"  {r.reason}" if r.reason else ""
            click.echo(f"{r.id:>5} {when(r.at)} {r.actor:<10} {r.action:<9} {r.target}{move}{why}")

    emit(as_json, rows, human)


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
