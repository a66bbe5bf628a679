"""`modelvc webhook`: deliver channel moves, gate results and other events over HTTP.

On a local registry and, for admins on '*', on a server (--registry http://...).
Adding and removing webhooks is an admin action (events.require_admin).
"""

from __future__ import annotations

from typing import Any

import click

from .context import Ctx, json_option
from .output import emit, when


def _events(ctx: Ctx) -> Any:
    """The registry's Events, or RemoteEvents through its server."""

    return ctx.registry().events


def _public(hook: Any) -> dict[str, Any]:
    # Never the secret: it was shown once, when the webhook was added.
    return {"id": hook.id, "url": hook.url, "events": hook.events, "cursor": hook.cursor,
            "created_at": hook.created_at, "active": hook.active}


@click.group()
def webhook() -> None:
    """HTTP webhooks fired by audit events (promote, rollback, force, gate, commit, ...).

    Each POST carries the event as JSON, signed with the webhook's secret:
    X-Modelvc-Signature: sha256=<HMAC-SHA256 of the body>."""


@webhook.command("add")
@click.argument("url")
@click.option("--secret", help="HMAC secret shared with the receiver (default: generated, "
              "printed once).")
@click.option("--event", "events", multiple=True, metavar="ACTION",
              help="Only these audit actions (repeatable; default: every event).")
@json_option
@click.pass_obj
def add(ctx: Ctx, url: str, secret: str | None, events: tuple[str, ...], as_json: bool) -> None:
    """Send events to URL from now on (earlier events are not replayed)."""
    from ..lineage import author
    from ..webhooks import new_secret

    generated = secret is None
    secret = secret or new_secret()
    hook = _events(ctx).add(url, secret=secret, events=events, actor=author())
    out = _public(hook)
    if generated:
        out["secret"] = secret
    what = ", ".join(hook.events) if hook.events else "all events"
    emit(as_json, out, f"webhook {hook.id}: {url} ({what})"
         + (f"\nsecret (shown once): {secret}" if generated else ""))


@webhook.command("list")
@json_option
@click.pass_obj
def list_(ctx: Ctx, as_json: bool) -> None:
    """Active webhooks and how many events wait for each (secrets are never shown)."""
    rows = [{**_public(s.webhook), "pending": s.pending} for s in _events(ctx).status()]

    def human() -> None:
        if not rows:
            click.echo("(no webhooks)")
        for r in rows:
            what = ",".join(r["events"]) or "all"
            click.echo(f"{r['id']:>3} {r['url']}  events={what}  delivered-through={r['cursor']}"
                       f"  pending={r['pending']}")

    emit(as_json, rows, human)


@webhook.command("remove")
@click.argument("webhook_id", type=int, metavar="ID")
@json_option
@click.pass_obj
def remove(ctx: Ctx, webhook_id: int, as_json: bool) -> None:
    """Stop sending events to webhook ID (its delivery log is kept)."""
    from ..lineage import author

    _events(ctx).remove(webhook_id, actor=author())
    emit(as_json, {"removed": webhook_id}, f"removed webhook {webhook_id}")


@webhook.command("log")
@click.argument("webhook_id", type=int, metavar="[ID]", required=False)
@click.option("--limit", type=int, default=50, show_default=True, help="Newest N attempts.")
@json_option
@click.pass_obj
def log(ctx: Ctx, webhook_id: int | None, limit: int, as_json: bool) -> None:
    """Delivery attempts: event, HTTP status or error, oldest first."""
    rows = _events(ctx).log(webhook_id=webhook_id)[-limit:] if limit > 0 else []

    def human() -> None:
        if not rows:
            click.echo("(no deliveries)")
        for d in rows:
            result = f"HTTP {d.status}" if d.status is not None else "no answer"
            err = f"  {d.error}" if d.error and d.status is None else ""
            click.echo(f"{when(d.at)} webhook {d.webhook_id} event {d.audit_id} "
                       f"try {d.attempt}: {result}{err}")

    emit(as_json, rows, human)


@webhook.command("deliver")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Keep retrying failing webhooks with backoff for up to SECONDS.")
@json_option
@click.pass_obj
def deliver(ctx: Ctx, wait: float, as_json: bool) -> None:
    """Deliver pending events now; exit 1 if some are still pending."""
    report = _events(ctx).deliver(wait=wait)
    pending = ", ".join(f"webhook {k}: {v}" for k, v in report.pending.items())
    emit(as_json, report, f"delivered {report.delivered}, failed attempts "
         f"{report.failed_attempts}" + (f", pending {pending}" if pending else ""))
    if report.pending:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(webhook)
