"""`modelvc staging`: the checkpoints a training run staged whose commit never finished
(the process stopped first: a crash, a kill, a failed commit; modelvc.api.staging).

`list` shows them, `recover` commits them oldest first, each onto its branch (audited
as commits), `drop` deletes them (audited as staging-drop, with a reason). ROOT is the
registry's staging/ folder by default; a run on a server registry, or with its
checkpoints on another file system, stages in .modelvc-staging/ beside its checkpoint
folders: pass that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .context import Ctx, json_option
from .output import emit, empty

if TYPE_CHECKING:
    from ..api.staging import Staged


def _root(ctx: Ctx, root: str | None) -> Path:
    if root is not None:
        return Path(root)
    loc = ctx.registry().location
    if "://" in loc:
        raise UsageError(f"the registry {loc} is a server: its runs stage beside their "
                         "checkpoint folders", hint="pass that folder: modelvc staging "
                                                    "list PATH/.modelvc-staging")
    return Path(loc) / "staging"


def _row(s: Staged) -> dict[str, Any]:
    c = s.commit
    return {"entry": s.path.name, "path": str(s.path), "model": c.get("model"),
            "branch": c.get("branch"), "step": s.step, "files": sorted(s.stats),
            "bytes": sum(size for size, _ in s.stats.values()), "pid": s.pid,
            "host": s.host, "running": s.alive(), "created": s.created,
            "registry": s.registry}


def _line(r: dict[str, Any]) -> str:
    state = "its process still runs" if r["running"] else "its process stopped"
    return (f"{r['entry']}  {r['model']}@{r['branch']} step {r['step']}  "
            f"{r['bytes'] / 1e6:.1f} MB in {len(r['files'])} files  ({state})")


@click.group()
def staging() -> None:
    """Checkpoints staged by a training run and never committed (it stopped first)."""


@staging.command("list")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@json_option
@click.pass_obj
def list_(ctx: Ctx, root: str | None, as_json: bool) -> None:
    """The staged checkpoints under ROOT, oldest first."""
    from ..api import staging as st

    rows = [_row(s) for s in st.pending(_root(ctx, root))]

    def human() -> None:
        if not rows:
            empty("no staged checkpoints")
        for r in rows:
            click.echo(_line(r))

    emit(as_json, rows, human)


@staging.command("recover")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@json_option
@click.pass_obj
def recover(ctx: Ctx, root: str | None, as_json: bool) -> None:
    """Commit the checkpoints staged under ROOT by processes that stopped, oldest first,
    each as the next version of its branch, and remove them."""
    from ..api import staging as st

    versions = st.recover(ctx.registry(), _root(ctx, root))
    rows: list[dict[str, Any]] = [{"model": v.model, "number": v.number, "id": v.id,
                                   "step": v.metrics.get("step")} for v in versions]

    def human() -> None:
        if not rows:
            click.echo("nothing to recover")
        for r in rows:
            click.echo(f"{r['model']}@v{r['number']}  step {r['step']}  ({str(r['id'])[:12]})")

    emit(as_json, rows, human)


@staging.command("drop")
@click.argument("entries", nargs=-1)
@click.option("--root", type=click.Path(file_okay=False), help="The staging folder "
              "(default: the registry's staging/).")
@click.option("--all", "everything", is_flag=True, help="Every entry whose process stopped.")
@click.option("-r", "--reason", required=True, help="Why (recorded in the audit trail).")
@json_option
@click.pass_obj
def drop(ctx: Ctx, entries: tuple[str, ...], root: str | None, everything: bool,
         reason: str, as_json: bool) -> None:
    """Delete staged checkpoints ENTRIES (names from `list`), or --all, without
    committing them. Audited (staging-drop); refused while their process runs."""
    from ..api import staging as st

    if bool(entries) == everything:
        raise UsageError("name the entries to drop, or --all, not both",
                         hint="modelvc staging list shows them")
    reg = ctx.local_registry()
    staged = {s.path.name: s for s in st.pending(_root(ctx, root))}
    missing = [e for e in entries if e not in staged]
    if missing:
        raise UsageError(f"not staged: {', '.join(missing)}",
                         hint="modelvc staging list shows the staged entries")
    chosen = [staged[e] for e in entries] if entries else list(staged.values())
    running = [s.path.name for s in chosen if s.alive()]
    if running:
        raise UsageError(f"{', '.join(running)}: the process that staged it still runs",
                         hint="let that run finish its commits, or stop it first")
    rows = []
    for s in chosen:
        row = _row(s)
        reg.audit_outside(action="staging-drop", target=f"{row['model']}@{row['branch']}",
                          model=row["model"], after={"entry": s.path.name,
                                                     "step": s.step, "bytes": row["bytes"]},
                          reason=reason)
        st.discard(s)
        rows.append(row)

    def human() -> None:
        if not rows:
            click.echo("nothing to drop")
        for r in rows:
            click.echo(f"dropped {_line(r)}")

    emit(as_json, rows, human)


def register(group: click.Group) -> None:
    group.add_command(staging)
