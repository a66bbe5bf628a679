"""`modelvc serve`: the serving gateway (needs the `serve` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .context import Ctx, json_option
from .output import emit_line


def _need_serving() -> None:
    try:
        import hpack  # noqa: F401
        import onnxruntime  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"serving needs {exc.name}", hint="pip install 'modelvc[serve]'"
                         ) from exc


@click.command()
@click.argument("targets", nargs=-1, metavar="MODEL[@CHANNEL]...")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="TOML (or JSON) file: see modelvc.serving.config.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8000).")
@click.option("--grpc-port", type=click.IntRange(0, 65535),
              help="Port of OIP over gRPC (default 8001, as Triton's; 0 turns it off).")
@click.option("--canary", "canary", metavar="CHANNEL",
              help="Send --canary-percent of traffic to this channel, judged by the policy.")
@click.option("--canary-percent", type=click.FloatRange(0, 100),
              help="Share of traffic the canary gets (default 10).")
@click.option("--no-auto", is_flag=True, help="Report canary decisions without acting.")
@click.option("--min-samples", type=click.IntRange(1),
              help="Canary requests before the policy judges (default 50).")
@click.option("--min-feedback", type=click.IntRange(0),
              help="Feedback labels before live accuracy counts (default 30).")
@click.option("--no-accuracy", is_flag=True,
              help="Judge the canary without feedback (no labels come back): errors, "
                   "drift and latency only.")
@click.option("--no-drift", is_flag=True,
              help="Do not compare predicted-label histograms with stable.")
@click.option("--no-latency", is_flag=True,
              help="Do not compare p95 latency with stable (a shared or loaded machine).")
@click.option("--actor", metavar="NAME",
              help="Who automatic canary promotions and rollbacks are recorded as "
                   "(default modelvc-serve); a policy with roles must list it. Or set "
                   "$MODELVC_SERVE_TOKEN to an API token: the gateway acts as its subject.")
@click.option("--shadow", metavar="REF", help="Mirror traffic to this channel or version.")
@click.option("--poll-interval", type=float, help="Seconds between channel looks (0.2).")
@click.option("--trust", type=click.Choice(["never", "signed", "any"]),
              help="Which versions may run a Python predictor (default never).")
@click.option("--workers", type=int,
              help="Inference threads (default 4); short ONNX calls run on the event loop.")
@click.option("--load-cpus", metavar="CPUS",
              help="CPUs where versions are loaded and freed, as taskset -c (e.g. 1): "
                   "with the server pinned elsewhere, a hot swap delays no request.")
@click.option("--checkout-helper/--no-checkout-helper", default=None,
              help="Prepare a version's first load (checkout, graph optimization) in a "
                   "helper process at idle CPU priority, off the serving process's GIL "
                   "(default: with --load-cpus).")
@click.option("--standby-mb", type=click.FloatRange(0), metavar="MB",
              help="Keep freed ONNX versions loaded, up to MB of checkout in all (default "
                   "64; 0: none): serving one again is then instant.")
@click.option("--fleet", is_flag=True,
              help="Join a fleet: switch only when a deployment says so (modelvc deploy).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Replica label deployments select on (repeatable; implies --fleet).")
@click.option("--replica-id", help="Replica id in the fleet (default HOSTNAME-PORT; needs "
              "--fleet).")
@click.option("--advertise", metavar="URL",
              help="URL the fleet reaches this gateway at (needs --fleet).")
@click.option("--heartbeat", type=float, help="Seconds between fleet reports (1.0; needs --fleet).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@json_option
@click.pass_obj
def serve(ctx: Ctx, targets: tuple[str, ...], config: str | None, host: str | None,
          port: int | None, grpc_port: int | None, canary: str | None,
          canary_percent: float | None, no_auto: bool, min_samples: int | None,
          min_feedback: int | None, no_accuracy: bool, no_drift: bool, no_latency: bool,
          actor: str | None, shadow: str | None, poll_interval: float | None, trust: str | None,
          workers: int | None, load_cpus: str | None, checkout_helper: bool | None,
          standby_mb: float | None, fleet: bool, labels: tuple[str, ...],
          replica_id: str | None,
          advertise: str | None, heartbeat: float | None, log_level: str,
          as_json: bool) -> None:
    """Serve models over the Open Inference Protocol v2, following their channels.

    \b
      modelvc serve digits@production --canary canary --canary-percent 20
      modelvc serve --config serve.toml

    With --json the start-up line is a JSON object on stdout (logs stay on stderr).
    """
    fleet_only = [flag for flag, given in (("--replica-id", replica_id),
                                           ("--advertise", advertise),
                                           ("--heartbeat", heartbeat)) if given is not None]
    if fleet_only and not (fleet or labels):
        # A fleet gateway stops following its channel: that must be asked for, not implied.
        raise UsageError(f"{', '.join(fleet_only)} only apply to a fleet gateway",
                         hint="add --fleet (the gateway then switches versions only when a "
                              "deployment says so, not when its channel moves), or drop "
                              + ("them" if len(fleet_only) > 1 else "it"))
    _need_serving()
    import logging

    from ..serving.config import load_config
    from ..serving.runner import serve_forever

    # Canary policy flags (given ones only: a config file's policy keeps the rest).
    policy = {k: v for k, v in (("min_samples", min_samples), ("min_feedback", min_feedback),
                                ("check_accuracy", False if no_accuracy else None),
                                ("check_drift", False if no_drift else None),
                                ("check_latency", False if no_latency else None))
              if v is not None}
    if not canary and (policy or canary_percent is not None or no_auto):
        raise UsageError("--canary-percent, --no-auto and the canary policy options need "
                         "--canary CHANNEL (the channel whose version is tried)",
                         hint="modelvc serve digits@production --canary canary "
                              "--canary-percent 20")
    for t in targets:
        if canary and canary == (t.partition("@")[2] or "production"):
            raise UsageError(f"--canary {canary} is the channel {t} already serves",
                             hint="name the channel the candidate is promoted to, e.g. "
                                  "--canary canary")
    models: list[dict[str, Any]] = []
    for t in targets:
        model, _, ref = t.partition("@")
        entry: dict[str, Any] = {"model": model, "ref": ref or "production"}
        if canary:
            entry["canary"] = {"ref": canary, "percent": canary_percent or 10.0,
                               "auto": not no_auto}
            if policy:
                entry["canary"]["policy"] = policy
        if shadow:
            entry["shadow"] = shadow
        models.append(entry)
    overrides: dict[str, Any] = {"host": host, "port": port, "grpc_port": grpc_port,
                                 "poll_interval": poll_interval,
                                 "trust": trust, "workers": workers, "models": models or None,
                                 "actor": actor, "load_cpus": load_cpus,
                                 "checkout_helper": checkout_helper, "standby_mb": standby_mb}
    if fleet or labels or replica_id or advertise or heartbeat:
        from .deploy_cmds import _labels

        spec = {"labels": _labels(labels), "replica_id": replica_id, "advertise": advertise,
                "heartbeat": heartbeat}
        overrides["fleet"] = {k: v for k, v in spec.items() if v is not None}
    cfg = load_config(Path(config) if config else None, overrides)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    names = [f"{m.name}@{m.ref}" for m in cfg.models]
    url = f"http://{cfg.host}:{cfg.port}/v2"
    grpc_url = f"grpc://{cfg.host}:{cfg.grpc_port}" if cfg.grpc_port else None
    mode = ("fleet: switches when a deployment says so" if cfg.fleet is not None
            else "following the channels")
    if as_json:
        emit_line({"serving": names, "url": url, "grpc": grpc_url,
                   "fleet": cfg.fleet is not None})
    else:
        click.echo(f"serving {', '.join(names)} on {url}"
                   + (f" and {grpc_url}" if grpc_url else "") + f" ({mode})", err=True)
    reg = ctx.local_registry()
    for m in cfg.models:
        missing = _waiting_for(reg, m.model, m.ref)
        if missing:
            click.echo(f"warning: {missing}", err=True)
    try:
        serve_forever(reg, cfg, log_level=log_level)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
        from .. import interrupts

        interrupts.handled()  # a server's normal stop: exit 0, not 130
        click.echo("stopped", err=True)


def _waiting_for(reg: Any, model: str, ref: str) -> str | None:
    """Why MODEL@REF cannot be served yet (a model or channel not created, perhaps a
    typo), or None. The gateway still starts and serves it once it exists."""
    from ..errors import ModelNotFound
    from ..names import close_names

    def near(name: str, names: list[str]) -> str:
        close = close_names(name, names)
        return f"did you mean {close[0]!r}? " if close else ""

    try:
        names = {r.name for r in reg.refs(model)}
    except ModelNotFound:
        return (f"no model {model!r} in this registry yet: {model}@{ref} is not served "
                f"(not ready) until it exists; {near(model, reg.models())}"
                "check the spelling (`modelvc models`)")
    fixed = ref[:1] == "v" and ref[1:].isdigit()
    if not fixed and ref not in names:
        return (f"{model} has no channel, branch or tag {ref!r} yet: {model}@{ref} is not "
                f"served (not ready) until it exists; {near(ref, sorted(names))}check the "
                f"spelling (`modelvc refs {model}`)")
    return None


def register(group: click.Group) -> None:
    group.add_command(serve)
