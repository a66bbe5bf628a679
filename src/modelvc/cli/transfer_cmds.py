"""push, pull, clone, remote: move versions between registries (folders, servers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .context import Ctx, json_option
from .output import Progress, emit, human_bytes

if TYPE_CHECKING:
    from ..transfer import TransferResult

_token = click.option("--token", envvar="MODELVC_TOKEN", metavar="TOKEN",
                      help="API token for a server (default: $MODELVC_TOKEN).")
_jobs = click.option("--jobs", "-j", default=4, show_default=True,
                     help="Objects moved in parallel.")


def _resumable() -> None:
    """Ctrl-C or SIGTERM stopping a push or pull says what its error says when the
    other end goes away: the same command resumes it (errors.RESUME_HINT)."""
    from .. import interrupts
    from ..errors import RESUME_HINT

    interrupts.set_hint(RESUME_HINT, resumable=True)


def _summary(verb: str, r: TransferResult) -> None:
    resumed = (f" ({human_bytes(r.bytes_resumed)} of it held from an interrupted transfer, "
               "not sent again)") if r.bytes_resumed else ""
    click.echo(f"{verb}: {len(r.versions)} version(s), {r.objects_sent} object(s), "
               f"{human_bytes(r.bytes_sent)} sent{resumed}; {r.objects_skipped} already "
               "there")
    for ref in r.refs:
        click.echo(f"  {ref.kind:<8} {ref.ref:<32} {ref.version_id[:12]}  {ref.result}")


@click.command()
@click.argument("remote")
@click.argument("refs", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Move branches even when not a fast-forward.")
@click.option("--channels", is_flag=True, help="With MODEL, push its channels too.")
@_token
@_jobs
@json_option
@click.pass_obj
def push(ctx: Ctx, remote: str, refs: tuple[str, ...], force: bool, channels: bool,
         token: str | None, jobs: int, as_json: bool) -> None:
    """Send REFS (MODEL or MODEL@NAME) to REMOTE (a URL, a folder or a remote name);
    only what REMOTE lacks travels."""
    from ..transfer import push as do_push
    from ..transfer.engine import check_jobs

    _resumable()
    bar = Progress(f"push {remote}", 0, enabled=not as_json)
    r = do_push(ctx.local_registry(), remote, list(refs), force=force, channels=channels,
                token=token, jobs=check_jobs(jobs), progress=bar)
    bar.close()
    emit(as_json, r, lambda: _summary("pushed", r))


@click.command()
@click.argument("remote")
@click.argument("refs", nargs=-1)
@click.option("--force", is_flag=True, help="Move branches even when not a fast-forward.")
@click.option("--channels", is_flag=True, help="Pull channels too.")
@_token
@_jobs
@json_option
@click.pass_obj
def pull(ctx: Ctx, remote: str, refs: tuple[str, ...], force: bool, channels: bool,
         token: str | None, jobs: int, as_json: bool) -> None:
    """Fetch REFS (MODEL or MODEL@NAME; none: every model) from REMOTE."""
    from ..transfer import pull as do_pull
    from ..transfer.engine import check_jobs

    _resumable()
    bar = Progress(f"pull {remote}", 0, enabled=not as_json)
    r = do_pull(ctx.local_registry(), remote, list(refs), force=force, channels=channels,
                token=token, jobs=check_jobs(jobs), progress=bar)
    bar.close()
    emit(as_json, r, lambda: _summary("pulled", r))


@click.command()
@click.argument("url")
@click.argument("path")
@click.option("--meta", "meta_url", help="Metadata database URL for the new registry.")
@click.option("--objects", "objects_url", help="Object store URL for the new registry.")
@_token
@_jobs
@json_option
def clone(url: str, path: str, meta_url: str | None, objects_url: str | None,
          token: str | None, jobs: int, as_json: bool) -> None:
    """A new registry at PATH with every model, branch, tag and channel of URL."""
    from ..transfer import clone as do_clone
    from ..transfer.engine import check_jobs

    bar = Progress(f"clone {url}", 0, enabled=not as_json)
    reg, r = do_clone(url, path, token=token, jobs=check_jobs(jobs), meta_url=meta_url,
                      objects_url=objects_url, progress=bar)
    reg.close()
    bar.close()
    emit(as_json, r, lambda: _summary(f"cloned into {path}", r))


@click.group()
def remote() -> None:
    """Named remotes (kept in the registry's config.json)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@json_option
@click.pass_obj
def remote_add(ctx: Ctx, name: str, url: str, as_json: bool) -> None:
    """Remember URL (a server or a folder) as NAME."""
    from ..transfer import add_remote

    add_remote(ctx.local_registry(), name, url)
    emit(as_json, {"name": name, "url": url}, f"remote {name} -> {url}")


@remote.command("remove")
@click.argument("name")
@json_option
@click.pass_obj
def remote_remove(ctx: Ctx, name: str, as_json: bool) -> None:
    """Forget remote NAME."""
    from ..transfer import remove_remote

    remove_remote(ctx.local_registry(), name)
    emit(as_json, {"removed": name}, f"remote {name} removed")


@remote.command("list")
@json_option
@click.pass_obj
def remote_list(ctx: Ctx, as_json: bool) -> None:
    """Named remotes and their URLs."""
    from ..transfer import remotes

    table = remotes(ctx.local_registry())
    emit(as_json, table, "\n".join(f"{k}\t{v}" for k, v in sorted(table.items()))
         or "(no remotes)")


def register(group: click.Group) -> None:
    for c in (push, pull, clone, remote):
        group.add_command(c)
