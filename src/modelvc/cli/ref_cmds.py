"""Commands on refs: branches, tags, channels, promote, rollback, history."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..errors import UsageError
from .context import Ctx, json_option
from .output import emit, empty, to_jsonable, when


def _parse_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"bad time {text!r}: use ISO 8601, e.g. 2026-11-27T14:00:00") from exc
    return dt if dt.tzinfo else dt.astimezone(UTC)


@click.command()
@click.argument("model")
@click.option("--kind", type=click.Choice(["branch", "channel", "tag"]),
              help="Only refs of this kind.")
@json_option
@click.pass_obj
def refs(ctx: Ctx, model: str, kind: str | None, as_json: bool) -> None:
    """Branches, channels and tags of MODEL."""
    reg = ctx.registry()
    rows = reg.refs(model, kind=kind)

    def human() -> None:
        if not rows:
            what = {"branch": "branches", "channel": "channels", "tag": "tags"}
            empty(f"no {what.get(kind or '', 'refs')}")
        for r in rows:
            target = "-"
            if r.version_id:
                v = reg.resolve(f"{model}@{r.version_id}", deleted=True)
                target = f"v{v.number} {v.id[:12]}"
            click.echo(f"{r.kind:<8} {r.name:<20} {target}  {when(r.updated_at)}")

    emit(as_json, rows, human)


@click.group()
def branch() -> None:
    """Create or delete branches."""


@branch.command("create")
@click.argument("model")
@click.argument("name")
@click.option("--at", "at", help="Ref to start from (default: the model's main head).")
@json_option
@click.pass_obj
def branch_create(ctx: Ctx, model: str, name: str, at: str | None, as_json: bool) -> None:
    """Create branch NAME of MODEL."""
    r = ctx.registry().create_branch(model, name, at=at)
    emit(as_json, r, f"branch {model}@{name} created")


@branch.command("delete")
@click.argument("model")
@click.argument("name")
@click.option("-r", "--reason", default="",
              help="Why (audited); needed to delete main.")
@json_option
@click.pass_obj
def branch_delete(ctx: Ctx, model: str, name: str, reason: str, as_json: bool) -> None:
    """Delete branch NAME (its versions stay)."""
    ctx.registry().delete_ref(model, name, reason=reason)
    emit(as_json, {"deleted": f"{model}@{name}"}, f"branch {model}@{name} deleted")


class _TagGroup(click.Group):
    """`modelvc tag REF NAME` stays the way to tag (`tag create`); `tag delete ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_TagGroup)
def tag() -> None:
    """Tag a version (`modelvc tag REF NAME`), or delete a tag."""


@tag.command("create")
@click.argument("ref")
@click.argument("name")
@json_option
@click.pass_obj
def tag_create(ctx: Ctx, ref: str, name: str, as_json: bool) -> None:
    """Give version REF the immutable tag NAME."""
    r = ctx.registry().tag(ref, name)
    emit(as_json, r, f"tagged {ref} as {r.model}@{name}")


@tag.command("delete")
@click.argument("model")
@click.argument("name")
@click.option("-r", "--reason", required=True, help="Why (recorded in the audit trail).")
@json_option
@click.pass_obj
def tag_delete(ctx: Ctx, model: str, name: str, reason: str, as_json: bool) -> None:
    """Delete tag NAME of MODEL (audited; over a server the admin role). Its version
    stays; a version a tag points at can be deleted once its tags are gone."""
    ctx.registry().delete_ref(model, name, reason=reason)
    emit(as_json, {"deleted": f"{model}@{name}"}, f"tag {model}@{name} deleted")


@click.command()
@click.argument("ref")
@click.option("--to", "channel", required=True, help="Channel, e.g. staging or production.")
@click.option("-r", "--reason", default="", help="Why (recorded in the channel history).")
@click.option("--force", is_flag=True,
              help="Skip the channel's gates (admins only; needs -r REASON; recorded as force).")
@click.option("--create", is_flag=True,
              help="Create CHANNEL if the model has no such channel yet (not needed for a "
                   "channel the applied policy declares).")
@json_option
@click.pass_obj
def promote(ctx: Ctx, ref: str, channel: str, reason: str, force: bool, create: bool,
            as_json: bool) -> None:
    """Point CHANNEL at version REF (recorded; gated when a policy is applied).

    A channel the model does not have yet is refused (a typo must not make a new one)
    unless --create is given or the applied policy declares it."""
    reg = ctx.registry()
    target = reg.resolve(ref)
    held = any(c.name == channel and c.version_id == target.id
               for c in reg.refs(target.model, kind="channel"))
    r = reg.promote(ref, channel, reason=reason, force=force, create=create)
    v = reg.resolve(f"{r.model}@{r.version_id}")
    # Still a recorded move: re-promoting is how a deployment retries a version its
    # fleet refused (docs/deploy.md), so say what it did rather than skip it.
    again = (f"  ({channel} already held v{v.number}: recorded as a re-promotion, which "
             "a deployment takes as a retry)") if held and v.id == target.id else ""
    emit(as_json, r, f"{r.model}@{channel} -> v{v.number} ({v.id[:12]}){again}")


@click.command()
@click.argument("model")
@click.argument("channel")
@click.option("--to", "to",
              help="Version to roll back to: v2, a tag, an id prefix or MODEL@... "
                   "(default: the previous target).")
@click.option("-r", "--reason", default="", help="Why (recorded in the channel history).")
@json_option
@click.pass_obj
def rollback(ctx: Ctx, model: str, channel: str, to: str | None, reason: str,
             as_json: bool) -> None:
    """Move CHANNEL of MODEL back to its previous version in one step."""
    reg = ctx.registry()
    r = reg.rollback(model, channel, to=to, reason=reason)
    v = reg.resolve(f"{model}@{r.version_id}")
    emit(as_json, r, f"{model}@{channel} rolled back to v{v.number} ({v.id[:12]})")


@click.group()
def channel() -> None:
    """Inspect channels (moved by promote and rollback)."""


@channel.command("history")
@click.argument("model")
@click.argument("name")
@click.option("--at", "at", help="Only say what NAME pointed to at this time (ISO 8601).")
@json_option
@click.pass_obj
def channel_history(ctx: Ctx, model: str, name: str, at: str | None, as_json: bool) -> None:
    """Every move of channel NAME: who, when, from, to, why."""
    reg = ctx.registry()
    if at is not None:
        v = reg.at(model, name, when=_parse_time(at))
        label = f"v{v.number} ({v.id[:12]})" if v else "nothing"
        emit(as_json, {"at": at, "version": v}, f"{model}@{name} at {at}: {label}")
        return
    moves = reg.history(model, name=name)
    # Through the Registry API (works on a server URL too); deleted versions show as "-".
    nums = {v.id: v.number for v in reg.versions(model)}

    def lab(vid: str | None) -> str:
        return f"v{nums[vid]}" if vid in nums else "-"

    def human() -> None:
        for m in moves:
            why = f"  {m.reason}" if m.reason else ""
            click.echo(f"{when(m.at)}  {m.action:<8} {lab(m.old):>5} -> {lab(m.new):<5} "
                       f"by {m.actor}{why}")

    # --json: each move as recorded, and the version numbers the ids stand for
    rows = [{**to_jsonable(m), "old_number": nums.get(m.old or ""),
             "new_number": nums.get(m.new or "")} for m in moves]
    emit(as_json, rows, human)


@channel.command("list")
@click.argument("model")
@json_option
@click.pass_obj
def channel_list(ctx: Ctx, model: str, as_json: bool) -> None:
    """Channels of MODEL and what they serve."""
    click.get_current_context().invoke(refs, model=model, kind="channel", as_json=as_json)


def register(group: click.Group) -> None:
    for c in (refs, branch, tag, promote, rollback, channel):
        group.add_command(c)
