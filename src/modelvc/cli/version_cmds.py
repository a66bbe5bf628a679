"""Commands on versions: commit, log, show, diff, checkout."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from .context import Ctx, few_arenas, json_option
from .output import Progress, columns, emit, human_bytes, show_value, to_jsonable, when


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


def _version_line(v: Any, refs: dict[str, list[str]] | None = None,
                  model: str | None = None) -> str:
    """One version; another model's (a fork's origin) is shown as MODEL@vN."""
    names = ", ".join((refs or {}).get(v.id, []))
    tail = f" ({names})" if names else ""
    msg = v.message.splitlines()[0] if v.message else ""
    num = f"v{v.number}" if model is None or v.model == model else f"{v.model}@v{v.number}"
    # A deleted ancestor is still listed (its children stand alone): say it is gone.
    gone = f" [deleted {when(v.deleted_at)}]" if getattr(v, "deleted_at", None) else ""
    return f"{num:<5} {v.id[:12]}  {when(v.created_at)}  {v.author:<10} {msg}{tail}{gone}"


def _derived_mark(v: Any, numbers: dict[str, int]) -> str:
    """`[cast of v1 dtype=bf16] ` for a derived version (the graph draws it off its
    source: its parent), else ''."""
    rec = v.lineage.get("derived_from") if isinstance(v.lineage, dict) else None
    if not isinstance(rec, dict):
        return ""
    src = str(rec.get("version", ""))
    label = f"v{numbers[src]}" if src in numbers else src[:12]
    params = " ".join(f"{k}={val}" for k, val in (rec.get("params") or {}).items())
    return f"[{rec.get('recipe')} of {label}{' ' + params if params else ''}] "


def _refs_by_version(reg: Any, model: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in reg.refs(model):
        if r.version_id:
            label = r.name if r.kind == "branch" else f"{r.kind}:{r.name}"
            out.setdefault(r.version_id, []).append(label)
    return out


def _hash_early(path: str) -> None:
    """Start the sha256 of the files to commit (filehash.py); a path that cannot be
    committed is left for the commit to report."""
    from pathlib import Path

    from ..errors import ModelvcError
    from ..filehash import collect_files, start_sha256

    try:
        files = collect_files(Path(path))
    except (ModelvcError, OSError):
        return
    start_sha256([p for _, p in files])


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
    if not (ctx.location or "").startswith(("http://", "https://")):
        _hash_early(path)  # on a thread of its own while the registry loads
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
    ratio = v.stored_size / v.raw_size if v.raw_size else 0.0
    same = _same_files_as(reg, v, parent)
    tail = f"  same files as {same}" if same else ""
    emit(as_json, {**to_jsonable(v), "same_files_as": same},
         f"{model}@v{v.number} {v.id[:12]}  {human_bytes(v.raw_size)} raw, "
         f"{human_bytes(v.stored_size)} stored ({ratio:.3f}x){tail}")


def _same_files_as(reg: Any, v: Any, parent: str | None) -> str | None:
    """The parent (vN, or MODEL@vN for a fork's origin) when V holds exactly its files:
    still a new version (its message, params or metrics may differ), but said so."""
    if not v.parents:
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
        if not graph:
            for v in versions:
                click.echo(_version_line(v, refs, model))
            return
        from .graph import graph as lanes

        numbers = {v.id: v.number for v in versions}
        for prefix, node in lanes(versions):
            click.echo(prefix + _derived_mark(node, numbers) + _version_line(node, refs, model)
                       if node is not None else prefix)

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
            click.echo(f"derived  {derived.get('recipe')} v{derived.get('version_of_recipe')} "
                       f"of {str(derived.get('version'))[:12]} {derived.get('params')}")
        for title, kv in (("params", v.params), ("metrics", v.metrics)):
            if kv:
                click.echo(f"{title:<8} " + "  ".join(f"{k}={val}" for k, val in kv.items()))
        ratio = v.stored_size / v.raw_size if v.raw_size else 0
        click.echo(f"size     {human_bytes(v.raw_size)} raw, {human_bytes(v.stored_size)} "
                   f"new stored ({ratio:.3f}x)")
        for f in m.files:
            n = sum(1 for _ in f.tensors())
            extra = f", {n} tensors" if n else ""
            click.echo(f"  {f.path}  {human_bytes(f.size)}  {f.format}{extra}")

    emit(as_json, data, human)


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
            click.echo(f"derived: {d.derivation['derived']} is {d.derivation['recipe']} of "
                       f"{d.derivation['source']}{' ' + params if params else ''}")
        if d.error is not None:
            e = d.error
            click.echo(f"error over {e['tensors']:.0f} tensors ({e['elements']:.0f} values): "
                       f"max|d| {e['max_abs']:.2e}  rms {e['rms']:.2e}  rel_l2 "
                       f"{e['rel_l2']:.2e}")
        click.echo(f"tensors: {len(d.tensors)} changed, {d.tensors_unchanged} unchanged")
        ranked = sorted(d.tensors, key=lambda t: -(t.rel_l2 or 0))
        for t in ranked if all_tensors else ranked[:20]:
            if t.status in ("added", "removed"):
                click.echo(f"  {t.status:<8} {t.name}")
            elif t.status == "reshaped":
                click.echo(f"  reshaped {t.name} {t.old_shape} -> {t.new_shape}")
            else:
                dt = f" {t.old_dtype}->{t.new_dtype}" if t.old_dtype != t.new_dtype else ""
                stats = ""
                if t.changed_fraction is not None:
                    def num(x: float | None) -> str:  # None: infinite over JSON
                        return "inf" if x is None else f"{x:.2e}"

                    stats = (f" changed {t.changed_fraction:6.1%}  rel_l2 {num(t.rel_l2)}"
                             f"  max|d| {num(t.max_abs)}  rms {num(t.rms)}"
                             + ("  (int8 dequantized)" if t.dequantized else ""))
                click.echo(f"  {t.status:<8} {t.name}{dt}{stats}")
        if not all_tensors and len(ranked) > 20:
            click.echo(f"  ... {len(ranked) - 20} more (--all-tensors)")
        for path, changes in d.json.items():
            click.echo(f"{path}:")
            click.echo(columns([_change(c) for c in changes]))
        for title, changes in (("params", d.params), ("metrics", d.metrics)):
            if changes:
                click.echo(f"{title}:")
                click.echo(columns([_change(c) for c in changes], right=(2,)))

    emit(as_json, d, human)


def _change(c: Any) -> tuple[str, ...]:
    return ("", c.key, show_value(c.old, absent=c.old_absent), "->",
            show_value(c.new, absent=c.new_absent))


@click.command()
@click.argument("ref")
@click.argument("dest", type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite files that exist in DEST.")
@json_option
@click.pass_obj
def checkout(ctx: Ctx, ref: str, dest: str, force: bool, as_json: bool) -> None:
    """Write version REF into DEST, bit-exact and verified."""
    few_arenas()
    bar = Progress(f"checkout {ref}", 0, enabled=not as_json)
    res = ctx.registry().checkout(ref, dest, force=force, progress=bar)
    bar.close()
    emit(as_json, {"dest": str(res.dest), "files": res.files, "bytes": res.bytes},
         f"checked out {ref}: {res.files} files, {human_bytes(res.bytes)} -> {res.dest}")


def register(group: click.Group) -> None:
    for c in (commit, log, show, diff, checkout):
        group.add_command(c)
