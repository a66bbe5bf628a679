"""`modelvc derive SRC RECIPE --to BRANCH` and `modelvc derive --check VERSION`."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import UsageError
from .context import Ctx, json_option
from .output import emit, human_bytes, ratio, wrap


@click.command()
@click.argument("src", required=False)
@click.argument("recipe", required=False)
@click.option("--to", "branch", help="Branch for the derived version (new, or at SRC).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A recipe parameter (repeatable), e.g. dtype=bf16, sparsity=0.5.")
@click.option("--message", "-m", default="", help="Commit message (default: what was done).")
@click.option("--check", "check_ref", metavar="VERSION",
              help="Make VERSION again from its source and compare; record the result.")
@click.option("--no-record", is_flag=True, help="With --check: do not tag the result.")
@click.option("--list", "list_recipes", is_flag=True, help="List the available recipes.")
@json_option
@click.pass_obj
def derive(ctx: Ctx, src: str | None, recipe: str | None, branch: str | None,
           params: tuple[str, ...], message: str, check_ref: str | None, no_record: bool,
           list_recipes: bool, as_json: bool) -> None:
    """A new version made from SRC by RECIPE (cast, prune, ...), recorded as derived.

    `modelvc show VERSION --json` then carries "derived_from": the source, the recipe
    and its version, the parameters, the tools' versions and the recipe's statistics."""
    from .. import derive as d

    if list_recipes:
        rows = [{"name": r.name, "version": r.version, "deterministic": r.deterministic,
                 "tolerance": r.tolerance} for r in map(d.load, d.names())]

        def listing() -> None:
            for r in rows:
                how = ("deterministic" if r["deterministic"]
                       else f"tolerance {r['tolerance']}")
                click.echo(f"{r['name']:<16} v{r['version']}  {how}")

        emit(as_json, rows, listing)
        return
    if check_ref is not None:
        if src or recipe or branch or params:
            raise UsageError("--check VERSION takes no SRC, RECIPE, --to or --param",
                             hint="the recipe and parameters are read from VERSION's record")
        _check(ctx, check_ref, not no_record, as_json)
        return
    if recipe and recipe not in d.names():
        d.load(recipe)  # "no recipe named 'castt'", naming the recipes there are
    missing = [what for what, given in (("SRC", src), ("RECIPE", recipe),
                                        ("--to BRANCH", branch)) if not given]
    if missing or not src or not recipe or not branch:
        words = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 \
            else "".join(missing)
        raise UsageError(f"derive needs {words}",
                         hint=f"e.g. modelvc derive {src or 'bert@v3'} {recipe or 'cast'} "
                              f"--to {branch or 'bf16'}"
                              + ("" if recipe else f"; recipes: {', '.join(d.names())}"))
    from ..derive.recipe import parse_kv

    out = d.derive(ctx.registry(), src, recipe, to=branch, params=parse_kv(params),
                   message=message)
    v = out.version

    def human() -> None:
        params = " ".join(f"{k}={val}" for k, val in out.derived_from["params"].items())
        click.echo(wrap(f"{v.model}@v{v.number}  {v.id[:12]}  on {branch}  ({recipe} of "
                        f"{src}{', ' + params if params else ''})", "  "))
        # Scalars only (--json has every statistic, nested ones too), as many lines as
        # they take.
        stats = [f"{k}={_short(val)}" for k, val in out.derived_from["stats"].items()
                 if not isinstance(val, dict | list)]
        if stats:
            click.echo(wrap("  ".join(stats), "  ", "  "))
        click.echo(f"  stored {human_bytes(v.stored_size)} new for "
                   f"{human_bytes(v.raw_size)} raw ({ratio(v.stored_size, v.raw_size)})")

    emit(as_json, {"version": v, "derived_from": out.derived_from}, human)


def _short(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _check(ctx: Ctx, ref: str, record: bool, as_json: bool) -> None:
    from .. import derive as d

    r = d.check(ctx.registry(), ref, record=record)

    def human() -> None:
        verdict = "ok" if r.ok else "FAILED"
        click.echo(f"{r.version}: {verdict}  ({r.recipe} of {r.source}, "
                   f"{'same bytes' if r.deterministic else 'within tolerance'} expected)")
        if r.recorded_recipe_version != r.installed_recipe_version:
            click.echo(f"  recipe version: recorded {r.recorded_recipe_version}, "
                       f"installed {r.installed_recipe_version}")
        for f in r.files:
            if f.status != "same":
                extra = "" if f.max_abs is None else f"  max|d| {f.max_abs:.3g}"
                click.echo(f"  {f.status:<16} {f.path}{extra}")
        if r.tag:
            click.echo(f"  recorded as tag {r.tag}")

    emit(as_json, r, human)
    if not r.ok:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(derive)
