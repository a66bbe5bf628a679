"""Commands on the registry: init, models, du, verify, gc, delete, demo."""

from __future__ import annotations

import click

from .context import Ctx, json_option
from .output import Progress, emit, human_bytes, plural, times, wrap


@click.command()
@click.argument("path", default=".", type=click.Path())
@click.option("--meta", metavar="URL",
              help="Metadata database, e.g. postgresql://USER:PASSWORD@HOST/DB (an empty "
                   "database; default: SQLite in PATH/.modelvc).")
@click.option("--objects", metavar="URL",
              help="Object store, e.g. s3://BUCKET/PREFIX?endpoint=http://HOST:8333&region="
                   "us-east-1 (credentials: access_key/secret_key or the AWS_* variables; "
                   "default: PATH/.modelvc/objects).")
@json_option
def init(path: str, meta: str | None, objects: str | None, as_json: bool) -> None:
    """Create a registry in PATH/.modelvc (SQLite + local objects, or a shared
    PostgreSQL database and S3 bucket that other machines' folders point at too).

    \b
      modelvc init
      modelvc init /srv/registry --meta postgresql://modelvc:...@db/modelvc \\
          --objects 's3://models/prod?endpoint=http://s3:8333&region=us-east-1'
    """
    from ..scaleout import init_registry, redact

    root, meta_url, objects_url = init_registry(path, meta, objects)
    doc = {"registry": str(root), "meta": redact(meta_url), "objects": redact(objects_url)}
    where = "" if meta is None and objects is None else \
        f" (metadata {doc['meta']}, objects {doc['objects']})"
    emit(as_json, doc, f"created {root}{where}")


@click.command()
@json_option
@click.pass_obj
def models(ctx: Ctx, as_json: bool) -> None:
    """Models in the registry."""
    names = ctx.registry().models()
    emit(as_json, names, "\n".join(names) if names else "(no models)")


@click.command()
@click.argument("model", required=False)
@json_option
@click.pass_obj
def du(ctx: Ctx, model: str | None, as_json: bool) -> None:
    """Raw vs stored bytes per version and in total.

    A version's `stored` is what rebuilding it reads (its objects and their delta bases,
    shared with other versions or not); `new` is what its commit added. Without MODEL,
    the store's unreferenced objects (gc reclaims them) are counted too."""
    s = ctx.registry().stats(model=model)

    def human() -> None:
        for name, m in s["models"].items():
            click.echo(f"{name}: {len(m['versions'])} versions, {human_bytes(m['raw'])} raw, "
                       f"{human_bytes(m['stored'])} stored ({times(m['ratio'])})")
            for v in m["versions"]:
                new = v.get("new")
                added = f"  {human_bytes(new):>10} new" if new is not None else ""
                click.echo(f"  v{v['number']:<4} {human_bytes(v['raw']):>10} raw "
                           f"{human_bytes(v['stored']):>10} stored{added}  {times(v['ratio'])}")
        where = f" in {s['objects']} objects" if s["objects"] is not None else ""
        click.echo(f"total: {human_bytes(s['raw'])} raw, {human_bytes(s['stored'])} stored"
                   f"{where} ({times(s['ratio'])})")
        loose = s.get("unreferenced")
        if loose and loose["objects"]:
            click.echo(f"unreferenced: {loose['objects']} objects, "
                       f"{human_bytes(loose['bytes'])} no version needs (an interrupted "
                       "commit's or a deleted version's); `modelvc gc` reclaims them")

    emit(as_json, s, human)


@click.command()
@click.option("--repair", is_flag=True,
              help="Re-encode objects an old writer left undecodable from bytes that still "
                   "decode, move damaged objects aside (.modelvc/aside/) so committing "
                   "their files again stores them afresh (audited), then verify again.")
@json_option
@click.pass_obj
def verify(ctx: Ctx, repair: bool, as_json: bool) -> None:
    """Re-hash every object; name corrupt ones and the versions they break."""
    if repair:
        _repair(ctx, as_json)
        return
    bar = Progress("verify", 0, enabled=not as_json)  # stderr, and only on a terminal
    try:
        r = ctx.registry().verify(progress=bar)
    finally:
        bar.close()

    def human() -> None:
        # "unrecorded": objects a live version lists that the registry has no row for,
        # so `modelvc gc` would delete them.
        problems = [f"{plural(len(r.corrupt), 'corrupt object')}"] if r.corrupt else []
        if r.unrecorded:
            problems.append(f"{plural(len(r.unrecorded), 'version')} using objects the "
                            "registry does not record (gc would delete them)")
        click.echo(wrap(f"checked {plural(r.checked, 'object')} "
                        f"({human_bytes(r.bytes)} decoded) of {plural(r.versions, 'version')}: "
                        + ("; ".join(problems) if problems else "ok"), "  "))
        for oid, why in r.corrupt.items():
            click.echo(f"  corrupt {oid[:16]}  {why}")
        for v in r.broken_versions:
            click.echo(f"  breaks  {v}")
        for v, ids in r.unrecorded.items():
            click.echo(f"  {v} uses {plural(len(ids), 'unrecorded object')}: "
                       f"{', '.join(i[:12] for i in ids[:5])}")

    emit(as_json, r, human)
    if not r.ok:
        if not as_json and r.corrupt:
            click.echo("hint: `modelvc verify --repair` rebuilds what still decodes and "
                       "moves damaged objects aside, so committing their files again "
                       "stores them afresh", err=True)
        raise SystemExit(6)


def _repair(ctx: Ctx, as_json: bool) -> None:
    from ..repair import HINT

    bars: dict[str, Progress] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for b in bars.values():
                b.close()
            bars[phase] = Progress(phase, 0, enabled=not as_json,
                                   unit="objects" if phase == "repair" else "bytes")
        bars[phase](done, total)

    try:
        r = ctx.local_registry().repair(progress=progress)
    finally:
        for b in bars.values():
            b.close()

    def human() -> None:
        click.echo(f"found {len(r.found.corrupt)} corrupt object(s); repaired "
                   f"{len(r.repaired)}; " + ("verify: ok" if r.ok else "verify: still "
                                             f"{len(r.after.corrupt)} corrupt"))
        for oid, how in r.repaired.items():
            click.echo(f"  repaired {oid[:16]}  {how}")
        for oid, why in r.unrepairable.items():
            click.echo(f"  cannot repair {oid[:16]}  {why}")
        for oid, where in r.moved_aside.items():
            click.echo(f"  moved aside {oid[:16]}  its damaged bytes kept in {where}")
        for oid, why in r.after.corrupt.items():
            if oid not in r.unrepairable and oid not in r.moved_aside:
                click.echo(f"  corrupt {oid[:16]}  {why}")
        for v in r.after.broken_versions:
            click.echo(f"  breaks  {v}")

    emit(as_json, r, human)
    if not r.ok:
        if not as_json:
            click.echo(f"hint: {HINT}", err=True)
        raise SystemExit(6)


@click.command()
@click.option("--apply", is_flag=True, help="Really delete (default: dry run).")
@click.option("--grace", default=3600.0, show_default=True,
              help="Keep unreferenced objects younger than this many seconds.")
@json_option
@click.pass_obj
def gc(ctx: Ctx, apply: bool, grace: float, as_json: bool) -> None:
    """Remove objects no version needs (mark and sweep; dry run by default)."""
    bar = Progress("gc", 0, enabled=not as_json, unit="objects")
    r = ctx.registry().gc(dry_run=not apply, grace_seconds=grace, progress=bar)
    bar.close()
    verb = "removed" if apply else "would remove"
    expired = getattr(r, "uploads_expired", 0)

    def human() -> None:
        click.echo(f"{verb} {len(r.removable)} unreferenced objects "
                   f"({human_bytes(r.removable_bytes)}); {r.live} live"
                   + (f"; {expired} stale upload records expired" if expired else ""))
        if r.kept_young:
            click.echo(f"kept {r.kept_young} unreferenced objects "
                       f"({human_bytes(r.kept_young_bytes)}) written in the last "
                       f"{_span(r.grace_seconds)} (the grace period, for commits in progress); "
                       "`--grace 0` reclaims them when nothing else is writing")
        if r.packs_rewritten:
            click.echo(f"{'rewrote' if apply else 'would rewrite'} {r.packs_rewritten} "
                       f"mostly dead packs into {r.packs_written} "
                       f"({human_bytes(r.repack_bytes_freed)} freed)")
        if r.incomplete_uploads:
            held = human_bytes(r.incomplete_upload_bytes)
            click.echo(f"{'aborted' if apply else 'would abort'} {r.incomplete_uploads} "
                       f"incomplete S3 multipart uploads ({held}) started before the grace "
                       "period (left by failed pushes or commits)")
        if not apply and (r.removable or r.incomplete_uploads):
            click.echo("dry run: pass --apply to remove them")

    emit(as_json, r, human)


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


@click.command()
@click.argument("ref")
@click.option("-r", "--reason", default="", help="Why (recorded).")
@json_option
@click.pass_obj
def delete(ctx: Ctx, ref: str, reason: str, as_json: bool) -> None:
    """Delete version REF; versions stored as deltas against it are re-based."""
    n = ctx.registry().delete(ref, reason=reason)
    emit(as_json, {"deleted": ref, "rebased": n},
         f"deleted {ref} ({n} objects re-based); `modelvc gc --apply` reclaims its space, "
         "except objects written in the last hour (gc's grace period, which protects "
         "commits in progress): `modelvc gc --apply --grace 0` reclaims those too when "
         "nothing else is writing")


def register(group: click.Group) -> None:
    for c in (init, models, du, verify, gc, delete, demo):
        group.add_command(c)


@click.command()
@click.option("--dir", "workdir", type=click.Path(), help="Where to build the demo registry "
              "(default: a new temporary folder).")
@json_option
def demo(workdir: str | None, as_json: bool) -> None:
    """Train a small model, version it, promote it, catch a regression, roll back."""
    from pathlib import Path

    from ..demo import run

    result = run(Path(workdir) if workdir else None, say=(lambda s: None) if as_json
                 else click.echo)
    if as_json:
        emit(True, result)
