"""`modelvc token ...` and `modelvc role ...`: API tokens and roles for the server.

They work on a local registry (how the first admin is bootstrapped) and, for admins,
on a server (--registry http://...).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click

from ..errors import UsageError
from .context import Ctx, json_option
from .output import emit, empty, when

_SPAN = re.compile(r"^([0-9]+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(text: str) -> float:
    """'30d', '12h', '90m', '3600s', '2w' or an ISO date -> seconds from now."""
    m = _SPAN.match(text.strip())
    if m:
        return float(int(m.group(1)) * _UNIT[m.group(2)])
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"bad --expires {text!r}: write e.g. 30d, 12h, 90m or an ISO date"
                         ) from exc
    at = at if at.tzinfo else at.astimezone(UTC)
    return (at - datetime.now(UTC)).total_seconds()


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (the secret is shown once)."""


@token.command("create")
@click.argument("name")
@click.option("--subject", required=True, help="Who the token acts as (roles are bound to it).")
@click.option("--expires", help="Lifetime (30d, 12h, ...) or an ISO date; default: never.")
@click.option("--scope", "scopes", multiple=True, metavar="ROLE[:PATTERN]",
              help="Cap what the token may do, e.g. reader or writer:team-*. Repeatable.")
@json_option
@click.pass_obj
def token_create(ctx: Ctx, name: str, subject: str, expires: str | None,
                 scopes: tuple[str, ...], as_json: bool) -> None:
    """Create token NAME for SUBJECT and print it (it cannot be shown again)."""
    seconds = parse_expiry(expires) if expires else None
    secret, info = ctx.registry().tokens.create(name, subject=subject, scopes=scopes,
                                                expires_in_seconds=seconds)
    emit(as_json, {"token": secret, "info": info},
         f"{secret}\n(token {info.id} for {subject}: store it now, it is not shown again)")


@token.command("list")
@click.option("--subject")
@json_option
@click.pass_obj
def token_list(ctx: Ctx, subject: str | None, as_json: bool) -> None:
    """Tokens (never their secrets), oldest first."""
    rows = ctx.registry().tokens.list(subject=subject)

    def human() -> None:
        if not rows:
            empty("no tokens")
        for t in rows:
            state = ("revoked" if t.revoked_at else "expired"
                     if t.expires_at and t.expires_at <= datetime.now(UTC) else "active")
            exp = when(t.expires_at) if t.expires_at else "never"
            # admin:* is how an uncapped token is stored: it may do what its subject may
            cap = ("no cap (the subject's roles)" if list(t.scopes) == ["admin:*"]
                   else "capped to " + ",".join(t.scopes))
            click.echo(f"{t.id}  {t.name:<16} {t.subject:<12} {state:<8} expires {exp}  "
                       f"{cap}")

    emit(as_json, rows, human)


@token.command("revoke")
@click.argument("token_id")
@json_option
@click.pass_obj
def token_revoke(ctx: Ctx, token_id: str, as_json: bool) -> None:
    """Revoke token TOKEN_ID (from `modelvc token list`) at once."""
    row = ctx.registry().tokens.revoke(token_id)
    emit(as_json, row, f"token {token_id} revoked")


@click.group()
def role() -> None:
    """Grant and revoke roles (reader, writer, promoter, admin) on models or patterns."""


@role.command("grant")
@click.argument("subject")
@click.argument("role_name", metavar="ROLE")
@click.option("--on", "scope", required=True, metavar="MODEL_OR_PATTERN",
              help="A model name, a glob like 'team-*', or '*' for every model.")
@json_option
@click.pass_obj
def role_grant(ctx: Ctx, subject: str, role_name: str, scope: str, as_json: bool) -> None:
    """Give SUBJECT the ROLE on a model or pattern (replaces their role there)."""
    row = ctx.registry().roles.grant(subject, role_name, on=scope)
    emit(as_json, row, f"{subject} is {role_name} on {scope}")


@role.command("revoke")
@click.argument("subject")
@click.option("--on", "scope", required=True, metavar="MODEL_OR_PATTERN")
@json_option
@click.pass_obj
def role_revoke(ctx: Ctx, subject: str, scope: str, as_json: bool) -> None:
    """Remove SUBJECT's role on a model or pattern."""
    ctx.registry().roles.revoke(subject, on=scope)
    emit(as_json, {"subject": subject, "scope": scope, "role": None},
         f"{subject} has no role on {scope} any more")


@role.command("list")
@click.option("--subject")
@json_option
@click.pass_obj
def role_list(ctx: Ctx, subject: str | None, as_json: bool) -> None:
    """Role bindings."""
    rows = ctx.registry().roles.list(subject=subject)

    def human() -> None:
        if not rows:
            empty("no roles granted")
        for b in rows:
            click.echo(f"{b.subject:<16} {b.role:<9} {b.scope}")

    emit(as_json, rows, human)


def register(cli: click.Group) -> None:
    cli.add_command(token)
    cli.add_command(role)
