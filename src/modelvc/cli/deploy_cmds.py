"""`modelvc deploy`: fleet rollouts (modelvc.fleet): create, rollout, rollback, status."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from ..errors import UsageError
from .context import Ctx, json_option
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
                canary: dict[str, Any] | None = None, strategy: str | None = None) -> Any:
    from ..canary import Policy
    from ..fleet.controller import Controller

    canary = dict(canary or {})
    replicas, share = canary.pop("canary_replicas", 1), canary.pop("canary_share", None)
    return Controller(ctx.local_registry(), stage_timeout=stage_timeout, batch=batch,
                      canary_replicas=replicas, canary_share=share, policy=Policy(**canary),
                      strategy=strategy)


def canary_options(f: Any) -> Any:
    """Options of the canary strategy (not stored: given to each rollout, like --batch)."""
    for opt in reversed([
        click.option("--canary-replicas", type=click.IntRange(1), default=1,
                     show_default=True, help="Replicas that serve the new version first."),
        click.option("--canary-share", type=click.FloatRange(0, 1, min_open=True,
                                                             max_open=True),
                     metavar="FRACTION",
                     help="Instead of whole replicas: every replica serves the new version "
                          "to this fraction of requests (sticky per X-Request-Key), e.g. "
                          "0.1. Implies --strategy canary; replicas hold both versions."),
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
        click.option("--no-latency", "no_latency", is_flag=True,
                     help="Do not compare p95 latency with the stable version (gateways "
                          "on a shared or loaded machine; measure speed separately)."),
    ]):
        f = opt(f)
    return f


def strategy_override(f: Any) -> Any:
    """--strategy for one rollout (or one watcher's rollouts) instead of the stored one."""
    return click.option(
        "--strategy", type=click.Choice(["atomic", "rolling", "canary"]),
        help="This run's strategy instead of the deployment's: atomic and canary may "
             "replace each other (rolling is chosen at create).")(f)


def _canary(kw: dict[str, Any]) -> dict[str, Any]:
    out = {k: kw.pop(k) for k in ("canary_replicas", "canary_share", "window",
                                  "min_samples", "min_feedback")}
    out["check_accuracy"] = not kw.pop("no_accuracy")
    out["check_drift"] = not kw.pop("no_drift")
    out["check_latency"] = not kw.pop("no_latency")
    return out


def _line(as_json: bool, out: Any, *, stream: bool = False) -> None:
    """One outcome; `stream` (deploy watch): JSON Lines, one compact document each."""
    d = out.deployment
    data = {"deployment": d.name, "ok": out.ok, "state": d.state, "epoch": d.epoch,
            "reason": out.reason, "seconds": round(out.seconds, 3)}
    text = f"{d.name}: {d.state} at epoch {d.epoch} in {out.seconds:.3f}s" + \
        (f" ({out.reason})" if out.reason else "")
    if stream and as_json:
        click.echo(json.dumps(data, sort_keys=True))
    else:
        emit(as_json, data, text)


def _outcome(as_json: bool, out: Any) -> None:
    _line(as_json, out)
    if not out.ok:
        raise SystemExit(5)


@click.group()
def deploy() -> None:
    """Roll versions out to a fleet of gateways (`modelvc serve --fleet`), atomically."""


@deploy.command("create")
@click.argument("target", metavar="MODEL[@CHANNEL]")
@click.option("--name", help="Deployment name (default MODEL-CHANNEL).")
@click.option("--strategy", type=click.Choice(["atomic", "rolling", "canary"]),
              help="atomic (default): stage everywhere, flip together; rolling: --batch "
                   "replicas at a time, for fleets without memory for two versions; canary "
                   "(default with --canary-share): --canary-replicas first, or "
                   "--canary-share of every replica's requests, judged by the canary "
                   "policy, then the rest atomically (or every replica back).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per rolling step.")
@click.option("--selector", "-l", multiple=True, metavar="KEY=VALUE",
              help="Replica labels a gateway must carry (repeatable).")
@click.option("--no-rollout", is_flag=True, help="Only record it; roll out later.")
@canary_options
@json_option
@click.pass_obj
def create(ctx: Ctx, /, target: str, name: str | None, strategy: str | None, batch: int,
           selector: tuple[str, ...], no_rollout: bool, as_json: bool, **kw: Any) -> None:
    """Deploy what MODEL@CHANNEL names to the gateways the selector picks."""
    model, _, channel = target.partition("@")
    channel = channel or "production"
    canary = _canary(kw)
    strategy = strategy or ("canary" if canary["canary_share"] is not None else "atomic")
    with _controller(ctx, batch=batch, canary=canary, strategy=strategy) as c:
        d = c.create(name or f"{model}-{channel}", model, channel, strategy=strategy,
                     selector=_labels(selector))
        if no_rollout:
            emit(as_json, {"deployment": d.name, "state": d.state}, f"created {d.name}")
            return
        _after_interrupt(d.name)
        _outcome(as_json, c.rollout(d.name))


@deploy.command("rollout")
@click.argument("name")
@click.option("--to", "to", metavar="VERSION", help="v3 or a ref (default: the channel).")
@click.option("--reason", default="")
@click.option("--stage-timeout", type=float, default=60.0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per step (rolling strategy).")
@strategy_override
@canary_options
@json_option
@click.pass_obj
def rollout(ctx: Ctx, /, name: str, to: str | None, reason: str, stage_timeout: float,
            batch: int, strategy: str | None, as_json: bool, **kw: Any) -> None:
    """Stage VERSION everywhere, then switch every replica at one epoch (or none).
    A switch an interrupted rollout left pending (Ctrl-C, kill -9) is dropped first."""
    _after_interrupt(name)
    with _controller(ctx, stage_timeout, batch, _canary(kw), strategy) as c:
        _outcome(as_json, c.rollout(name, to, reason=reason))


@deploy.command("rollback")
@click.argument("name")
@click.option("--reason", default="")
@json_option
@click.pass_obj
def rollback(ctx: Ctx, name: str, reason: str, as_json: bool) -> None:
    """Switch the whole fleet back to the still-warm previous version in one step."""
    _after_interrupt(name)
    with _controller(ctx) as c:
        _outcome(as_json, c.rollback(name, reason=reason))


@deploy.command("abort")
@click.argument("name")
@json_option
@click.pass_obj
def abort(ctx: Ctx, name: str, as_json: bool) -> None:
    """Drop the switch an interrupted rollout left pending: every replica serves the
    deployment's version again (at a new epoch); the channel stays where it is."""
    with _controller(ctx) as c:
        d = c.abort(name)
    emit(as_json, {"deployment": d.name, "state": d.state, "epoch": d.epoch,
                   "reason": d.reason}, f"{d.name}: {d.state} at epoch {d.epoch} ({d.reason})")


def _after_interrupt(name: str) -> None:
    """What to do if Ctrl-C or SIGTERM stops this command (modelvc.interrupts)."""
    from .. import interrupts

    interrupts.set_hint(f"`modelvc deploy status {name}` says what is pending; `modelvc "
                        f"deploy rollout {name}` finishes it, `modelvc deploy abort {name}` "
                        "drops it")


@deploy.command("watch")
@click.argument("name")
@click.option("--poll", type=float, default=0.2, show_default=True,
              help="Seconds between looks on SQLite (PostgreSQL wakes on NOTIFY).")
@click.option("--stage-timeout", type=float, default=60.0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Replicas per step (rolling strategy).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]),
              default="warning", show_default=True,
              help="What goes to stderr: debug adds a line per look at the channel.")
@strategy_override
@canary_options
@json_option
@click.pass_obj
def watch(ctx: Ctx, /, name: str, poll: float, stage_timeout: float, batch: int,
          log_level: str, strategy: str | None, as_json: bool, **kw: Any) -> None:
    """Roll the fleet out whenever the deployment's channel moves (promote, rollback),
    until interrupted, with the same strategy and canary options as `deploy rollout`.
    A version the fleet refused waits for the channel to move again (also across
    restarts: refusals are kept in the audit trail). --json: one line per event.
    SIGINT/SIGTERM stop it after the rollout in progress (a second one interrupts that);
    it prints "stopped" and exits 130 (SIGINT) or 143 (SIGTERM)."""
    def skipped(r: Any) -> None:
        if as_json:
            click.echo(json.dumps({"deployment": name, "skipped": r.number,
                                   "refused": r.as_json()}, sort_keys=True))
        else:
            click.echo(f"{name}: v{r.number} was refused at {r.channel} revision "
                       f"{r.revision} ({r.reason}); waiting for the channel to move")

    import logging

    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("modelvc").setLevel(log_level.upper())  # not the libraries' debug
    with _controller(ctx, stage_timeout, batch, _canary(kw), strategy) as c:
        c.strategy_for(c.rollouts.get_deployment(name))  # NotFound, or a bad override, now
        from ..fleet.watch import Watcher

        w = Watcher(c, name, poll=poll, on_skip=skipped,
                    on_outcome=lambda out: _line(as_json, out, stream=True))
        click.echo(f"watching {name} (Ctrl-C stops)", err=True)
        try:
            with w.stop_on_signals():  # a flag the loop checks: see fleet/watch.py
                w.run()
        except KeyboardInterrupt:  # a second signal, during a rollout
            if w.stopped_by is None:
                w.stopped_by = signal.SIGINT
        finally:
            w.close()
    click.echo("stopped", err=True)
    sys.exit(128 + w.stopped_by if w.stopped_by else 0)  # 130 after SIGINT, 143 SIGTERM


@deploy.command("status")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def status(ctx: Ctx, name: str | None, as_json: bool) -> None:
    """What each deployment wants and what each replica serves, and why."""
    with _controller(ctx) as c:
        names = [name] if name else [d.name for d in c.rollouts.list_deployments()]
        docs = [c.status(n) for n in names]

    def human() -> None:
        for doc in docs:
            click.echo(f"{doc['name']}: {doc['model']}@{doc['channel']} v{doc['version']} "
                       f"epoch {doc['epoch']} {doc['state']}"
                       + (f" ({doc['reason']})" if doc["reason"] else ""))
            if doc["pending"] is not None:
                click.echo(f"  pending v{doc['pending']} at epoch {doc['pending_epoch']}: "
                           f"{doc['pending_why']}")
            if doc["channel_ahead"] is not None:
                click.echo(f"  {doc['channel_ahead']}")
            if doc["canary_share"] is not None:
                click.echo(f"  canary v{doc['pending']}: {doc['canary_share']:.0%} of "
                           "every replica's requests")
            refused = doc["refused"]
            if refused is not None:
                click.echo(f"  {doc['channel']} names v{refused['version']}, refused "
                           f"{refused['at']}: not tried again until the channel moves")
            for r in doc["replicas"]:
                serving = f"v{r['serving']}" if r["serving"] is not None else "-"
                warm = f" warm v{r['warm']}" if r["warm"] is not None else ""
                click.echo(f"  {r['id']:<20} {serving} epoch {r['epoch']}{warm} "
                           f"{r['state']:<8} {r['why']}")

    emit(as_json, docs if name is None else docs[0], human)


def register(group: click.Group) -> None:
    group.add_command(deploy)
