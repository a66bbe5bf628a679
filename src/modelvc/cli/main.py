"""`modelvc` command: the group, shared options, error handling.

Heavy modules (numpy, SQLAlchemy, the registry) are imported inside commands so that
`modelvc --help` and scripts calling the CLI per version start fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from ..errors import ModelvcError
from .context import Ctx, json_option

__all__ = ["Ctx", "build", "cli", "json_option", "main"]

class Group(click.Group):
    """Turns modelvc errors into one clear line, a hint, and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if "--json" not in sys.argv:
                raise
            click.echo(json.dumps({"error": "UsageError", "message": exc.format_message(),
                                   "hint": None}))
            sys.exit(2)
        except ModelvcError as exc:
            as_json = "--json" in sys.argv
            if as_json:
                click.echo(json.dumps({"error": exc.code, "message": exc.message,
                                       "hint": exc.hint}))
            else:
                click.echo(f"error: {exc.message}", err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--registry", envvar="MODELVC_REGISTRY", metavar="PATH",
              help="Registry folder (default: the nearest .modelvc upward, or $MODELVC_REGISTRY).")
@click.version_option(package_name="modelvc")
@click.pass_context
def cli(ctx: click.Context, registry: str | None) -> None:
    """modelvc: version control and continuous delivery for neural-network models."""
    ctx.obj = Ctx(registry)
    ctx.call_on_close(ctx.obj.close)


# One command, one process: decoded blocks kept for a *next* commit in the same process
# (a training loop calling Registry.commit) would only hold memory here. Long-running
# commands (serve, server) and scripts may still set MODELVC_CACHE_MB.
CLI_CACHE_MB = "32"
# Idle decode buffers kept for reuse (codec/buffers.py; 96 MB in a long-lived process):
# a one-shot command's peak RSS counts each of them.
CLI_POOL_MB = "32"


def build() -> click.Group:
    """The `modelvc` group with every command registered (idempotent)."""
    if cli.commands:
        return cli
    from . import (
        admin_cmds,
        audit_cmds,
        deploy_cmds,
        derive_cmds,
        gate_cmds,
        import_cmds,
        ref_cmds,
        serve_cmds,
        server_cmds,
        sign_cmds,
        token_cmds,
        transfer_cmds,
        ui_cmds,
        version_cmds,
        webhook_cmds,
    )

    for mod in (version_cmds, ref_cmds, admin_cmds, audit_cmds, webhook_cmds, sign_cmds,
                serve_cmds, gate_cmds, transfer_cmds, server_cmds, token_cmds, deploy_cmds,
                ui_cmds, derive_cmds, import_cmds):
        mod.register(cli)
    return cli


def main() -> None:
    os.environ.setdefault("MODELVC_CACHE_MB", CLI_CACHE_MB)
    os.environ.setdefault("MODELVC_POOL_MB", CLI_POOL_MB)
    build()(prog_name="modelvc")


if __name__ == "__main__":
    main()
