"""`modelvc` command: the group, shared options, error handling.

Heavy modules (numpy, SQLAlchemy, the registry) are imported inside commands so that
`modelvc --help` and scripts calling the CLI per version start fast.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import signal
import sys
from typing import Any, NoReturn

import click

from .. import __version__, interrupts
from ..errors import ModelvcError
from .context import Ctx, json_option

__all__ = ["Ctx", "build", "cli", "json_option", "main"]

# Each command and the module that registers it: a command imports only its own module
# (the 15 of them cost ~40 ms of a one-shot command's start-up). tests/cli/test_lazy.py
# checks this against what each module registers.
MODULES = {
    "version_cmds": ("checkout", "commit", "diff", "log", "show"),
    "ref_cmds": ("branch", "channel", "promote", "refs", "rollback", "tag"),
    "admin_cmds": ("delete", "demo", "du", "gc", "init", "models", "verify"),
    "audit_cmds": ("audit",),
    "webhook_cmds": ("webhook",),
    "sign_cmds": ("key", "sign", "signature", "verify-signature"),
    "serve_cmds": ("serve",),
    "gate_cmds": ("gate", "policy"),
    "transfer_cmds": ("clone", "pull", "push", "remote"),
    "server_cmds": ("server",),
    "token_cmds": ("role", "token"),
    "deploy_cmds": ("deploy",),
    "ui_cmds": ("ui",),
    "derive_cmds": ("derive",),
    "import_cmds": ("import",),
    "staging_cmds": ("staging",),
}
COMMANDS = {name: mod for mod, names in MODULES.items() for name in names}
# What `modelvc --help` says of a command whose help's first sentence is too long for
# its list (click cuts it with "..."): each fits one line of an 80-column terminal.
SHORT_HELP = {
    "checkout": "Write a version's files into a new or empty folder.",
    "clone": "Copy every model and ref of the registry at URL.",
    "commit": "Record a file or folder as a new immutable version.",
    "delete": "Delete a version; versions built on it stay whole.",
    "demo": "Train, version, promote and roll back a toy model.",
    "deploy": "Roll versions out to a fleet of gateways.",
    "derive": "Make a version from another (cast, prune, quantize).",
    "gc": "Remove objects no version needs (dry run by default).",
    "init": "Create a registry (SQLite, or PostgreSQL + S3).",
    "key": "Manage signing keys (the registry keeps public keys).",
    "log": "History of a version, newest first.",
    "policy": "Check, apply and show the promotion policy.",
    "promote": "Point a channel at a version (gated by the policy).",
    "pull": "Fetch models and refs from a remote registry.",
    "push": "Send models and refs to a remote registry.",
    "role": "Grant and revoke roles on models.",
    "rollback": "Move a channel back to its previous version.",
    "serve": "Serve models for inference, following their channels.",
    "server": "Serve the registry over HTTP (API, auth, push/pull).",
    "show": "Everything about one version: lineage, metrics, files.",
    "sign": "Sign a version (its manifest and every file's hash).",
    "signature": "Exchange signatures with OpenSSF model-signing.",
    "staging": "Checkpoints a training run staged but never committed.",
    "token": "Create, list and revoke API tokens.",
    "ui": "Browse and steer the registry in a web browser.",
    "verify": "Re-hash every object; name corrupt ones.",
    "verify-signature": "Check that a version has a valid, trusted signature.",
    "webhook": "HTTP webhooks fired by audit events.",
}
ARGS_KEY = "modelvc.args"  # ctx.meta: the arguments the group was called with


def _register(group: click.Group, mod: str) -> None:
    importlib.import_module(f".{mod}", __package__).register(group)
    for name in MODULES[mod]:
        cmd = group.commands.get(name)
        if cmd is not None and name in SHORT_HELP and not cmd.short_help:
            cmd.short_help = SHORT_HELP[name]


class Group(click.Group):
    """Turns modelvc errors into one clear line, a hint, and the error's exit code;
    imports a command's module when the command is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            _register(self, COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            name = args[0] if args else ""
            if not name or name.startswith("-") or name in COMMANDS:
                raise
            from ..names import close_names

            close = close_names(name, COMMANDS)
            if close:
                raise click.UsageError(f"No such command '{name}'; did you mean "
                                       f"'{close[0]}'?", ctx) from exc
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        build()
        return super().list_commands(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The whole command line, for errors raised before a command parsed its --json
        # (read from the arguments given, not sys.argv, so `main(args)` works in process).
        ctx.meta.setdefault(ARGS_KEY, tuple(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in ctx.meta.get(ARGS_KEY, ())
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if isinstance(exc, click.NoSuchOption) and exc.option_name == "--registry":
                # A group option: it goes before the command (modelvc --registry X log m).
                exc = click.UsageError("--registry goes before the command: modelvc "
                                       "--registry PATH COMMAND ... (or set "
                                       "MODELVC_REGISTRY)", exc.ctx)
                if not as_json:
                    raise exc from None
            if not as_json:
                raise
            click.echo(json.dumps({"error": "UsageError", "message": exc.format_message(),
                                   "hint": None}))
            sys.exit(2)
        except (Exception, KeyboardInterrupt) as exc:
            # After SIGINT/SIGTERM whatever comes out (a database error the interrupt
            # left behind included) is the interruption: say so, not the error.
            signum = interrupts.received() or \
                (signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 0)
            if signum:
                _interrupted(ctx, signum, as_json)
            if not isinstance(exc, ModelvcError):
                raise
            if as_json:
                doc: dict[str, object] = {"error": exc.code, "message": exc.message,
                                          "hint": exc.hint}
                if exc.resumable:  # cut mid-transfer: the same command resumes it
                    doc["resumable"] = True
                click.echo(json.dumps(doc))
            else:
                _say("error", exc.message)
                if exc.hint:
                    _say("hint", exc.hint)
            sys.exit(exc.exit_code)


# What is true after a command stopped midway, and what to do (unless the command set
# its own hint): a checkout writes each file beside its target and renames it into place.
STOPPED = {
    "": ("every step it completed is recorded and none is half-written",
         "run it again to finish"),
    "checkout": ("each file it wrote is complete and verified, none is half-written",
                 "run it again with --force to finish"),
}


def _say(label: str, text: str) -> None:
    """'LABEL: TEXT' on stderr; on a terminal wrapped to its width (a pipe or a log
    gets one line per message, for grep)."""
    if sys.stderr.isatty():
        from .output import wrap

        click.echo(wrap(text, " " * (len(label) + 2), f"{label}: "), err=True)
    else:
        click.echo(f"{label}: {text}", err=True)


def _interrupted(ctx: click.Context, signum: int, as_json: bool) -> NoReturn:
    """One line: which command stopped, that nothing is half-written, what to do; exits
    128 + the signal number (130 after Ctrl-C, 143 after SIGTERM)."""
    name = signal.Signals(signum).name
    args = list(ctx.meta.get(ARGS_KEY, ()))
    at = next((i for i, a in enumerate(args) if a in COMMANDS), len(args))
    words = args[at:at + 1]
    if words and isinstance(cli.commands.get(words[0]), click.Group):
        words += [a for a in args[at + 1:at + 2] if not a.startswith("-")]
    what = " ".join(["modelvc", *words])
    true, again = STOPPED.get(words[0] if words else "", STOPPED[""])
    message = f"interrupted by {name}: `{what}` stopped before it finished; {true}"
    todo = interrupts.hint() or again
    if as_json:
        doc: dict[str, object] = {"error": "Interrupted", "message": message, "hint": todo}
        if interrupts.resumable():  # as a transfer's error when its server went away
            doc["resumable"] = True
        click.echo(json.dumps(doc))
    else:
        click.echo(f"{message} ({todo})", err=True)
    sys.exit(128 + signum)


EPILOG = """\b
Exit codes: 0 done, 1 other error, 2 usage, 3 not found, 4 ambiguous,
5 conflict or gate failed, 6 corrupt, 7 storage, 8 permission,
130/143 interrupted (Ctrl-C/SIGTERM). --registry goes before the command."""


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EPILOG)
@click.option("--registry", envvar="MODELVC_REGISTRY", metavar="PATH",
              help="Registry folder (default: the nearest .modelvc upward, or $MODELVC_REGISTRY).")
# The version string itself, not package_name: click then reads the installed package's
# metadata with importlib.metadata (~25 ms of `modelvc --version`'s ~75).
@click.version_option(__version__, package_name="modelvc")
@click.pass_context
def cli(ctx: click.Context, registry: str | None) -> None:
    """modelvc: version control and continuous delivery for neural-network models."""
    ctx.obj = Ctx(registry)
    ctx.call_on_close(ctx.obj.close)


# One command, one process: decoded blocks kept for a *next* commit in the same process
# (a training loop calling Registry.commit) would only hold memory here. Long-running
# commands (serve, server) and scripts may still set MODELVC_CACHE_MB.
CLI_CACHE_MB = "16"
# Idle decode buffers kept for reuse (codec/buffers.py; 96 MB in a long-lived process):
# a one-shot command's peak RSS counts each of them. 16 MB each (cache and pool): a 91 MB
# delta commit peaks ~20 MiB lower than with 32 at the same CPU (load 25, issue 13).
CLI_POOL_MB = "16"
# ... except for a checkout: its five decode threads (segments and a multi-block tensor's
# blocks) hold ~100 MB of payloads, byte planes and blocks at once (a chain end's block:
# four links of up to four 1 MB planes each); with 16 MB kept idle the rest was freed
# and faulted in afresh, block after block (a chain-end checkout: -22 % page faults,
# -0.025 s CPU, -15 ms wall, +32 MiB peak; docs/benchmarks.md, session 9).
CHECKOUT_POOL_MB = "96"
# Nor are the raw blocks a commit stored kept for a next commit (storage.keep_committed).
CLI_KEEP_COMMITTED = "0"
# Long-running commands that stop on signals their own way (uvicorn's handlers).
SERVERS = frozenset({"serve", "server", "ui"})


def build() -> click.Group:
    """The `modelvc` group with every command registered (idempotent)."""
    if set(COMMANDS) - set(cli.commands):
        for mod in MODULES:
            _register(cli, mod)
    return cli


def main(args: list[str] | None = None) -> None:
    """The `modelvc` command on ARGS (default: sys.argv[1:]); exits with its exit code."""
    argv = sys.argv[1:] if args is None else args
    command = next((a for a in argv if a in COMMANDS), None)
    os.environ.setdefault("MODELVC_CACHE_MB", CLI_CACHE_MB)
    os.environ.setdefault("MODELVC_POOL_MB",
                          CHECKOUT_POOL_MB if command == "checkout" else CLI_POOL_MB)
    os.environ.setdefault("MODELVC_KEEP_COMMITTED", CLI_KEEP_COMMITTED)
    # Ctrl-C and SIGTERM: between database transactions, reported as one line
    # (Group.invoke); exit 130 / 143. Signals outside a command (start-up, close) too.
    # Servers keep uvicorn's handlers (a drain, then the signal re-raised: a clean stop).
    if command in SERVERS:
        cli(args, prog_name="modelvc")
        return
    if args is None:
        # The process ends with this command: no collection need walk what it holds
        # (~300k objects of modules, numpy, the registry). The interpreter's teardown
        # collects everything once more; frozen objects are skipped (~15 ms of a
        # one-shot command, e.g. 0.148 -> 0.130 s for the commit path's imports alone).
        atexit.register(gc.freeze)
    with interrupts.handling():
        try:
            cli(args, prog_name="modelvc")  # commands are registered as they are asked for
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            click.echo(f"interrupted by {signal.Signals(signum).name}", err=True)
            sys.exit(128 + signum)
        except SystemExit as exc:
            signum = interrupts.received()
            if signum and exc.code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
                click.echo(f"interrupted by {signal.Signals(signum).name}", err=True)
                sys.exit(128 + signum)
            raise


if __name__ == "__main__":
    main()
