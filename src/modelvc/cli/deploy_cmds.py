"""`modelvc deploy`: fleet rollouts (modelvc.fleet): create, rollout, rollback, status."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from .main import Ctx, json_option
from .output import emit


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise UsageError(f"bad label {p!r}: use KEY=VALUE")
        out[k] = v
    return out


def _controller(ctx: Ctx, stage_timeout: float = 60.0, batch: int = 1,
                canary: dict[str, Any] | None = None) -> Any:
    from ..fleet.controller import Controller
    from ..serving.canary import Policy

    canary = canary or {}
    policy = Policy(**{k: v for k, v in canary.items() if k != "canary_replicas"})
    return Controller(ctx.registry(), stage_timeout=stage_timeout, batch=batch,
                      canary_replicas=canary.get("canary_replicas", 1), policy=policy)


def canary_options(f: Any) -> Any:
    """Options of the canary strategy (not stored: given to each rollout, like --batch)."""
    for opt in reversed([
        click.option("--canary-replicas", type=click.IntRange(1), default=1,
                     show_default=True, help="Replicas that serve the new version first."),
        click.option("--canary-window", "window", type=click.FloatRange(min=0.1),
                     default=60.0, show_default=True,
                     help="Seconds the canary may take to earn a verdict (else rollback)."),
        click.option("--min-samples", type=click.IntRange(1), default=50, show_default=True,
                     help="Canary requests before the policy judges."),
        click.option("--min-feedback", type=click.IntRange(0), default=30,
                     show_default=True, help="Feedback labels before live accuracy counts."),
        click.option("--no-accuracy", "no_accuracy", is_flag=True,
                     help="Do not wait for feedback (no labels come back)."),
        click.option("--no-drift", "no_drift", is_flag=True,
                     help="Do not compare predicted-label histograms (the new version is "
                          "meant to answer differently)."),
    ]):
        f = opt(f)
    return f


def _canary(kw: dict[str, Any]) -> dict[str, Any]:
    out = {k: kw.pop(k) for k in ("canary_replicas", "window", "min_samples", "min_feedback")}
    out["check_accuracy"] = not kw.pop("no_accuracy")
    out["check_drift"] = not kw.pop("no_drift")
    return out


def _outcome(as_json: bool, out: Any) -> None:
    d = out.deployment
    data = {"deployment": d.name, "ok": out.ok, "state": d.state, "epoch": d.epoch,
            "reason": out.reason, "seconds": round(out.seconds, 3)}
    emit(as_json, data, f"{d.name}: {d.state} at epoch {d.epoch} in {out.seconds:.3f}s"
         + (f" ({out.reason})" if out.reason else ""))
    if not out.ok:
        raise SystemExit(5)


@click.group()
def deploy() -> None:
    """Roll versions out to a fleet of gateways (`modelvc serve --fleet`), atomically."""


@deploy.command("create")
@click.argument("target", metavar="MODEL[@CHANNEL]")
@click.option("--name", help="Deployment name (default MODEL-CHANNEL).")
@click.option("--strategy", default="atomic", show_default=True,
              type=click.Choice(["atomic", "rolling", "canary"]),
              help="atomic: stage everywhere, flip together; rolling: --batch replicas at a "
                   "time, for fleets without memory for two versions; canary: "
                   "--canary-replicas first, judged by the canary policy, then the rest "
                   "atomically (or every replica back).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per rolling step.")
@click.option("--selector", "-l", multiple=True, metavar="KEY=VALUE",
              help="Replica labels a gateway must carry (repeatable).")
@click.option("--no-rollout", is_flag=True, help="Only record it; roll out later.")
@canary_options
@json_option
@click.pass_obj
def create(ctx: Ctx, /, target: str, name: str | None, strategy: str, batch: int,
           selector: tuple[str, ...], no_rollout: bool, as_json: bool, **kw: Any) -> None:
    """Deploy what MODEL@CHANNEL names to the gateways the selector picks."""
    model, _, channel = target.partition("@")
    channel = channel or "production"
    with _controller(ctx, batch=batch, canary=_canary(kw)) as c:
        d = c.create(name or f"{model}-{channel}", model, channel, strategy=strategy,
                     selector=_labels(selector))
        if no_rollout:
            emit(as_json, {"deployment": d.name, "state": d.state}, f"created {d.name}")
            return
        _outcome(as_json, c.rollout(d.name))


@deploy.command("rollout")
@click.argument("name")
@click.option("--to", "to", metavar="VERSION", help="v3 or a ref (default: the channel).")
@click.option("--reason", default="")
@click.option("--stage-timeout", type=float, default=60.0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per step (rolling strategy).")
@canary_options
@json_option
@click.pass_obj
def rollout(ctx: Ctx, /, name: str, to: str | None, reason: str, stage_timeout: float,
            batch: int, as_json: bool, **kw: Any) -> None:
    """Stage VERSION everywhere, then switch every replica at one epoch (or none)."""
    with _controller(ctx, stage_timeout, batch, _canary(kw)) as c:
        _outcome(as_json, c.rollout(name, to, reason=reason))


@deploy.command("rollback")
@click.argument("name")
@click.option("--reason", default="")
@json_option
@click.pass_obj
def rollback(ctx: Ctx, name: str, reason: str, as_json: bool) -> None:
    """Switch the whole fleet back to the still-warm previous version in one step."""
    with _controller(ctx) as c:
        _outcome(as_json, c.rollback(name, reason=reason))


@deploy.command("watch")
@click.argument("name")
@click.option("--poll", type=float, default=0.2, show_default=True,
              help="Seconds between looks on SQLite (PostgreSQL wakes on NOTIFY).")
@click.option("--stage-timeout", type=float, default=60.0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per step (rolling strategy).")
@json_option
@click.pass_obj
def watch(ctx: Ctx, name: str, poll: float, stage_timeout: float, batch: int,
          as_json: bool) -> None:
    """Roll the fleet out whenever the deployment's channel moves (promote, rollback),
    until interrupted. A version the fleet refused waits for the channel to move again."""
    def report(out: Any) -> None:
        d = out.deployment
        emit(as_json, {"deployment": d.name, "ok": out.ok, "state": d.state,
                       "epoch": d.epoch, "reason": out.reason,
                       "seconds": round(out.seconds, 3)},
             f"{d.name}: {d.state} at epoch {d.epoch} in {out.seconds:.3f}s"
             + (f" ({out.reason})" if out.reason else ""))

    with _controller(ctx, stage_timeout, batch) as c:
        w = c.watch(name, poll=poll, on_outcome=report)
        c.meta.get_deployment(name)  # NotFound now, not in the loop
        click.echo(f"watching {name} (Ctrl-C stops)", err=True)
        try:
            w.run()
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
        finally:
            w.stop()


@deploy.command("status")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def status(ctx: Ctx, name: str | None, as_json: bool) -> None:
    """What each deployment wants and what each replica serves, and why."""
    with _controller(ctx) as c:
        names = [name] if name else [d.name for d in c.meta.list_deployments()]
        docs = [c.status(n) for n in names]

    def human() -> None:
        for doc in docs:
            click.echo(f"{doc['name']}: {doc['model']}@{doc['channel']} v{doc['version']} "
                       f"epoch {doc['epoch']} {doc['state']}"
                       + (f" ({doc['reason']})" if doc["reason"] else ""))
            for r in doc["replicas"]:
                click.echo(f"  {r['id']:<20} v{r['serving']} epoch {r['epoch']} warm "
                           f"v{r['warm']} {r['state']:<8} {r['why']}")

    emit(as_json, docs if name is None else docs[0], human)


def register(group: click.Group) -> None:
    group.add_command(deploy)
