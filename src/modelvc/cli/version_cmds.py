"""Commands on versions: commit, log, show, diff, checkout."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from .context import Ctx, few_arenas, json_option
from .output import (
    Progress,
    columns,
    emit,
    fit,
    human_bytes,
    plural,
    ratio,
    show_value,
    to_jsonable,
    when,
    width,
    wrap,
)


def _kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """Parse k=v pairs; values that parse as JSON numbers/booleans become those."""
    import json

    out: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise UsageError(f"--{what} expects KEY=VALUE, got {p!r}")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _label(v: Any, model: str | None) -> str:
    return f"v{v.number}" if model is None or v.model == model else f"{v.model}@v{v.number}"


def _widths(versions: list[Any], model: str) -> tuple[int, int]:
    """The number's and the author's column widths for VERSIONS (an author's name is
    cut at 16)."""
    return (max((len(_label(v, model)) for v in versions), default=2),
            min(max((len(v.author) for v in versions), default=1), 16))


def _version_line(v: Any, refs: dict[str, list[str]] | None = None,
                  model: str | None = None, prefix: str = "", mark: str = "",
                  widths: tuple[int, int] = (5, 10)) -> str:
    """One version (its time to the minute; in the graph, whose lanes PREFIX takes room,
    its day), cut to the terminal's width: the message shortened (or left out) first,
    so the refs, the derived MARK and a deletion stay whole. Another model's version (a
    fork's origin) is shown as MODEL@vN."""
    names = ", ".join((refs or {}).get(v.id, []))
    msg = v.message.splitlines()[0] if v.message else ""
    num, author = _label(v, model), fit(v.author, widths[1])
    day = when(v.created_at)[:10 if prefix else 16]
    head = f"{prefix}{num:<{widths[0]}} {v.id[:12]} {day} {author:<{widths[1]}}"
    # A deleted ancestor is still listed (its children stand alone): say it is gone.
    gone = f"[deleted {when(v.deleted_at)}]" if getattr(v, "deleted_at", None) else ""
    tail = " ".join(x for x in (f"({names})" if names else "", mark, gone) if x)
    room = width() - len(head) - 2 - (len(tail) + 1 if tail else 0)
    if msg and len(msg) > room:  # no room even for a few words: `show` has it all
        msg = fit(msg, room) if room >= 8 else ""
    rest = " ".join(x for x in (msg, tail) if x)
    return fit(f"{head}  {rest}" if rest else head)


def _derived_mark(v: Any, numbers: dict[str, int]) -> str:
    """`[cast of v1 dtype=bf16]` for a derived version (the graph draws it off its
    source: its parent), else ''."""
    rec = v.lineage.get("derived_from") if isinstance(v.lineage, dict) else None
    if not isinstance(rec, dict):
        return ""
    src = str(rec.get("version", ""))
    label = f"v{numbers[src]}" if src in numbers else src[:12]
    params = " ".join(f"{k}={val}" for k, val in (rec.get("params") or {}).items()
                      if val not in ("", None))  # unset options: `show` lists them
    return f"[{rec.get('recipe')} of {label}{' ' + params if params else ''}]"


def _refs_by_version(reg: Any, model: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in reg.refs(model):
        if r.version_id:
            label = r.name if r.kind == "branch" else f"{r.kind}:{r.name}"
            out.setdefault(r.version_id, []).append(label)
    return out


def _scan(path: str, *, hash_early: bool) -> list[str]:
    """What the commit will skip (filehash.SKIP_NAMES), for its output; with HASH_EARLY
    also start the sha256 of the files to commit (filehash.py). A path that cannot be
    committed is left for the commit to report."""
    from pathlib import Path

    from ..errors import ModelvcError
    from ..filehash import collect_files, start_sha256

    skipped: list[str] = []
    try:
        files = collect_files(Path(path), skipped=skipped)
    except (ModelvcError, OSError):
        return []
    if hash_early:
        start_sha256([p for _, p in files])
    return skipped


@click.command()
@click.argument("path", type=click.Path())
@click.option("--model", "-M", required=True, help="Model name.")
@click.option("--branch", "-b",
              help="Branch to commit to (default: main). A new branch starts at --parent, "
                   "else at main's head (or with no parent: --root).")
@click.option("-m", "--message", default="", help="What changed and why.")
@click.option("--param", multiple=True, metavar="K=V", help="Training parameter (repeatable).")
@click.option("--metric", multiple=True, metavar="K=V", help="Metric (repeatable).")
@click.option("--tag", multiple=True, help="Immutable tag for the new version (repeatable).")
@click.option("--parent", help="Parent ref (default: the branch head).")
@click.option("--fork", is_flag=True,
              help="Allow --parent to be another model's version (MODEL starts as a fork).")
@click.option("--root", is_flag=True,
              help="No parent: start a new line on a new branch (-b), e.g. training from "
                   "scratch.")
@click.option("--data", multiple=True, type=click.Path(), help="Data path to fingerprint.")
@json_option
@click.pass_obj
def commit(ctx: Ctx, path: str, model: str, branch: str | None, message: str,
           param: tuple[str, ...], metric: tuple[str, ...], tag: tuple[str, ...],
           parent: str | None, fork: bool, root: bool, data: tuple[str, ...],
           as_json: bool) -> None:
    """Record PATH (a file or folder) as a new immutable version."""
    few_arenas()
    if root and parent is not None:
        raise UsageError("--root and --parent contradict each other: a root has no parent",
                         hint="drop one of them")
    # The early hash runs on a thread of its own while the registry loads.
    skipped = _scan(path, hash_early=not (ctx.location or "").startswith(("http://",
                                                                          "https://")))
    reg = ctx.registry()
    if parent is not None and not fork:
        pv = reg.resolve(parent)
        if pv.model != model:  # most likely a slip: a fork must be asked for
            raise UsageError(f"parent {parent} is a version of {pv.model}, not of {model}",
                             hint=f"give a version of {model} (`modelvc log {model}`), or "
                                  f"pass --fork to start {model} from {pv.model}'s version")
    bar = Progress(f"commit {model}", 0, enabled=not as_json)
    v = reg.commit(path, model=model, branch=branch, message=message,
                   params=_kv(param, "param"), metrics=_kv(metric, "metric"), tags=tag,
                   parent=parent, data=data, progress=bar, root=root)
    bar.close()
    same = _same_files_as(reg, v, parent)
    line = (f"{model}@v{v.number} {v.id[:12]}  {human_bytes(v.raw_size)} raw, "
            f"{human_bytes(v.stored_size)} stored ({ratio(v.stored_size, v.raw_size)})"
            + (f"  same files as {same}" if same else ""))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more"
                                          if len(skipped) > 5 else "")
        line += f"\nskipped: {shown} (never stored)"
    emit(as_json, {**to_jsonable(v), "skipped": skipped, "same_files_as": same}, line)


SAME_MAX_NEW = 1 << 20  # a commit that stored more than this added files its parent lacks


def _same_files_as(reg: Any, v: Any, parent: str | None) -> str | None:
    """The parent (vN, or MODEL@vN for a fork's origin) when V holds exactly its files:
    still a new version (its message, params or metrics may differ), but said so."""
    if not v.parents or v.stored_size > SAME_MAX_NEW:  # (no reads on a real commit)
        return None
    pv = reg.resolve(parent if parent is not None else f"{v.model}@{v.parents[0]}")

    def files(x: Any) -> list[tuple[str, str, int]]:
        return sorted((f.path, f.sha256, f.size) for f in reg.manifest(f"{x.model}@{x.id}").files)

    if files(pv) != files(v):
        return None
    return f"v{pv.number}" if pv.model == v.model else f"{pv.model}@v{pv.number}"


@click.command()
@click.argument("ref")
@click.option("--graph", is_flag=True, help="Draw the lineage graph.")
@click.option("--all", "all_", is_flag=True, help="Every version of the model, not only ancestors.")
@json_option
@click.pass_obj
def log(ctx: Ctx, ref: str, graph: bool, all_: bool, as_json: bool) -> None:
    """History of a version: REF and its ancestors, newest first."""
    reg = ctx.registry()
    model = ref.partition("@")[0]
    versions = reg.versions(model) if all_ else reg.log(ref)
    refs = _refs_by_version(reg, model)

    def human() -> None:
        widths = _widths(versions, model)
        if not graph:
            for v in versions:
                click.echo(_version_line(v, refs, model, widths=widths))
            return
        from .graph import graph as lanes

        numbers = {v.id: v.number for v in versions}
        for prefix, node in lanes(versions):
            click.echo(_version_line(node, refs, model, prefix, _derived_mark(node, numbers),
                                     widths) if node is not None else prefix)

    emit(as_json, versions, human)


@click.command()
@click.argument("ref")
@json_option
@click.pass_obj
def show(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Everything about one version: lineage, params, metrics, files."""
    reg = ctx.registry()
    v = reg.resolve(ref)
    m = reg.manifest(ref)
    files = [{"path": f.path, "size": f.size, "sha256": f.sha256, "format": f.format,
              "tensors": sum(1 for _ in f.tensors())} for f in m.files]
    data = {"version": v, "derived_from": v.lineage.get("derived_from"), "files": files}

    def human() -> None:
        click.echo(f"{v.model}@v{v.number}  {v.id}")
        click.echo(f"author   {v.author}\ndate     {when(v.created_at)}")
        if v.parents:
            click.echo("parents  " + ", ".join(p[:12] for p in v.parents))
        if v.message:
            click.echo(f"message  {v.message}")
        git = v.lineage.get("git")
        if git:
            dirty = " (dirty)" if git.get("dirty") else ""
            click.echo(f"code     {git.get('commit', '')[:12]} on {git.get('branch')}{dirty}")
        for d in v.lineage.get("data", []):
            click.echo(f"data     {d['path']}  blake3:{d['blake3'][:16]}")
        derived = v.lineage.get("derived_from")
        if isinstance(derived, dict):
            params = ", ".join(f"{k}={val}" for k, val in (derived.get("params") or {}).items())
            click.echo(wrap(f"{derived.get('recipe')} v{derived.get('version_of_recipe')} of "
                            f"{_source(reg, v.model, str(derived.get('version')))}"
                            + (f" ({params})" if params else ""), " " * 9, "derived  "))
        for title, kv in (("params", v.params), ("metrics", v.metrics)):
            if kv:
                click.echo(f"{title:<8} " + "  ".join(f"{k}={val}" for k, val in kv.items()))
        click.echo(f"size     {human_bytes(v.raw_size)} raw, {human_bytes(v.stored_size)} "
                   f"new stored ({ratio(v.stored_size, v.raw_size)})")
        for f in m.files:
            n = sum(1 for _ in f.tensors())
            extra = f", {n} tensors" if n else ""
            click.echo(f"  {f.path}  {human_bytes(f.size)}  {f.format}{extra}")

    emit(as_json, data, human)


def _source(reg: Any, model: str, vid: str) -> str:
    """A derived version's source as MODEL@vN (its id if it cannot be read)."""
    from ..errors import ModelvcError

    try:
        src = reg.resolve(f"{model}@{vid}")
    except ModelvcError:
        return vid[:12]
    return f"{src.model}@v{src.number}"


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--no-numeric", is_flag=True, help="Skip per-element statistics (faster).")
@click.option("--all-tensors", is_flag=True, help="List every changed tensor (default: top 20).")
@json_option
@click.pass_obj
def diff(ctx: Ctx, a: str, b: str, no_numeric: bool, all_tensors: bool, as_json: bool) -> None:
    """What changed from version A to version B."""
    bar = Progress(f"diff {a} {b}", 0, enabled=not as_json)
    d = ctx.registry().diff(a, b, numeric=not no_numeric, progress=bar)
    bar.close()

    def human() -> None:
        click.echo(f"--- {d.a}\n+++ {d.b}")
        for p in d.files_added:
            click.echo(f"A {p}")
        for p in d.files_removed:
            click.echo(f"D {p}")
        for p in d.files_changed:
            click.echo(f"M {p}")
        if d.derivation is not None:
            params = " ".join(f"{k}={v}" for k, v in d.derivation["params"].items())
            click.echo(wrap(f"derived: {d.derivation['derived']} is "
                            f"{d.derivation['recipe']} of {d.derivation['source']}"
                            f"{' (' + params + ')' if params else ''}", "  "))
        if d.error is not None:
            e = d.error
            click.echo(wrap(f"error: max|d| {e['max_abs']:.2e}  rms {e['rms']:.2e}  rel_l2 "
                            f"{e['rel_l2']:.2e} ({e['tensors']:.0f} tensors, "
                            f"{e['elements']:.0f} values)", "  "))
        click.echo(f"tensors: {len(d.tensors)} changed, {d.tensors_unchanged} unchanged")
        ranked = sorted(d.tensors, key=lambda t: -(t.rel_l2 or 0))
        for t in ranked if all_tensors else ranked[:20]:
            if t.status in ("added", "removed"):
                click.echo(fit(f"  {t.status:<8} {t.name}"))
            elif t.status == "reshaped":
                click.echo(fit(f"  reshaped {t.name} {t.old_shape} -> {t.new_shape}"))
            else:
                dt = f" {t.old_dtype}->{t.new_dtype}" if t.old_dtype != t.new_dtype else ""
                stats = ""
                if t.changed_fraction is not None:
                    def num(x: float | None) -> str:  # None: infinite over JSON
                        return "inf" if x is None else f"{x:.2e}"

                    stats = (f" changed {t.changed_fraction:6.1%}  rel_l2 {num(t.rel_l2)}"
                             f"  max|d| {num(t.max_abs)}  rms {num(t.rms)}"
                             + ("  (int8 dequantized)" if t.dequantized else ""))
                line = f"  {t.status:<8} {t.name}{dt}{stats}"
                if len(line) > width() and stats:  # the statistics on a line of their own
                    click.echo(fit(f"  {t.status:<8} {t.name}{dt}"))
                    line = " " * 11 + stats.lstrip()
                click.echo(fit(line))
        if not all_tensors and len(ranked) > 20:
            click.echo(f"  ... {len(ranked) - 20} more (--all-tensors)")
        for path, changes in d.json.items():
            click.echo(fit(f"{path}:"))
            for line in columns([_change(c) for c in changes]).splitlines():
                click.echo(fit(line))
        for title, changes in (("params", d.params), ("metrics", d.metrics)):
            if changes:
                click.echo(f"{title}:")
                for line in columns([_change(c) for c in changes], right=(2,)).splitlines():
                    click.echo(fit(line))

    emit(as_json, d, human)


def _change(c: Any) -> tuple[str, ...]:
    return ("", c.key, show_value(c.old, absent=c.old_absent), "->",
            show_value(c.new, absent=c.new_absent))


@click.command()
@click.argument("ref")
@click.argument("dest", type=click.Path())
@click.option("--force", is_flag=True,
              help="Write into a DEST that holds files: the version's files overwritten, "
                   "every other file left alone.")
@json_option
@click.pass_obj
def checkout(ctx: Ctx, ref: str, dest: str, force: bool, as_json: bool) -> None:
    """Write version REF into DEST (a new or empty folder, unless --force), bit-exact and
    verified; all or nothing: a failed checkout leaves DEST as it was."""
    few_arenas()
    bar = Progress(f"checkout {ref}", 0, enabled=not as_json)
    res = ctx.registry().checkout(ref, dest, force=force, progress=bar)
    bar.close()
    others = res.others
    emit(as_json, {"dest": str(res.dest), "files": res.files, "bytes": res.bytes,
                   "others": others},
         f"checked out {ref}: {plural(res.files, 'file')}, {human_bytes(res.bytes)} -> "
         f"{res.dest}" + (f"\nnote: {res.dest} also holds {plural(others, 'other file')} "
                          "(not part of the version; left alone)" if others else ""))


def register(group: click.Group) -> None:
    for c in (commit, log, show, diff, checkout):
        group.add_command(c)
