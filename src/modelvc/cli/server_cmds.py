"""`modelvc server`: the registry server (REST API, auth, push/pull, HF Hub endpoints)."""

from __future__ import annotations

import contextlib
import os

import click

from ..errors import RegistryNotFound, UsageError
from .context import Ctx, json_option
from .output import emit_line


@click.command("server")
@click.option("--registry", "registry_path", metavar="PATH",
              help="Registry folder to serve (default: the global --registry / "
                   "MODELVC_SERVER_REGISTRY / the config file).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8470).")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="YAML, TOML or JSON file with ServerConfig settings.")
@click.option("--anonymous-read/--no-anonymous-read", default=None,
              help="Let callers without a token read (default: no).")
@click.option("--public-url", help="How clients reach this server (for URLs in responses).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="How much the server logs (default: info).")
@json_option
@click.pass_obj
def server(ctx: Ctx, registry_path: str | None, host: str | None, port: int | None,
           config: str | None, anonymous_read: bool | None, public_url: str | None,
           log_level: str | None, as_json: bool) -> None:
    """Serve the registry over HTTP: /api/v1 (OpenAPI at /openapi.json), /healthz, /readyz.

    \b
    Settings: flags > MODELVC_SERVER_* environment > --config file > defaults.
    Every request needs an API token unless --anonymous-read; make one locally:
      modelvc role grant alice admin --on '*'
      modelvc token create laptop --subject alice
    SIGTERM/SIGINT stop accepting, finish in-flight requests, then exit.
    --json: the start-up line is a JSON object on stdout, the log JSON lines.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UsageError(f"the server needs {exc.name}", hint="pip install 'modelvc[server]'"
                         ) from exc
    from ..server import logs
    from ..server.app import create_app
    from ..server.config import load_config

    if registry_path is None and ctx.location and "://" not in ctx.location:
        registry_path = ctx.location
    if registry_path is None and not config and not any(
            k.startswith("MODELVC_SERVER_REGISTRY") for k in os.environ):
        # Like every other command: the nearest .modelvc upward from here.
        from ..layout import find

        with contextlib.suppress(RegistryNotFound):  # then load_config says what to pass
            registry_path = str(find(None).root)
    cfg = load_config(config, registry=registry_path, host=host, port=port,
                      anonymous_read=anonymous_read, public_url=public_url, log_level=log_level)
    logs.setup(cfg.log_level, cfg.log_json or as_json)
    app = create_app(cfg)
    if as_json:  # the human form is the log's "started" line
        emit_line({"url": f"http://{cfg.host}:{cfg.port}", "registry": str(cfg.registry)})
    from ..httpproto import with_header_timeout

    uvicorn.Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(cfg.graceful_timeout), lifespan="on",
        # h11 and asyncio as before: the serve extra installs httptools and uvloop for
        # the gateway, and "auto" would switch this server to them untested. h11 with a
        # deadline for request heads (modelvc.httpproto).
        http=with_header_timeout(cfg.header_timeout, "h11"), loop="asyncio",
    )).run()


def register(cli: click.Group) -> None:
    cli.add_command(server)
