"""`modelvc ui`: the web UI on this machine's registry (127.0.0.1 only)."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from .context import Ctx, json_option


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@click.command("ui")
@click.option("--port", type=int, default=8471, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Print the URL; do not open a browser.")
@json_option
@click.pass_obj
def ui(ctx: Ctx, port: int, no_browser: bool, as_json: bool) -> None:
    """Browse and steer this registry in a web browser (Ctrl-C stops it).

    Listens on 127.0.0.1 only. The printed URL carries a key made for this run: only
    whoever holds it can use the UI. Actions run as you, under the registry's policy,
    exactly like the CLI's promote, rollback, tag and branch."""
    try:
        import jinja2  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UsageError(f"the UI needs {exc.name}", hint="pip install 'modelvc[ui]'") from exc
    import socket
    import webbrowser  # imported here: every other command starts without them

    from ..lineage import author
    from ..ui.access import LocalAccess
    from ..ui.app import standalone

    host = "127.0.0.1"
    if port:
        try:
            with socket.socket() as s:
                s.bind((host, port))
        except OSError as exc:
            raise UsageError(f"port {port} on {host} is taken ({exc.strerror})",
                             hint="pass --port N, or --port 0 for any free port") from exc
    port = port or _free_port(host)
    access = LocalAccess(ctx.local_registry(), author())
    url = f"http://{host}:{port}/ui/login?key={access.key}"
    if as_json:
        click.echo(json.dumps({"url": url, "host": host, "port": port}), nl=True)
    else:
        click.echo(f"modelvc UI on {url}  (Ctrl-C stops it)")
    server = uvicorn.Server(uvicorn.Config(standalone(access), host=host, port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="off", http="h11", loop="asyncio"))
    if not no_browser:
        webbrowser.open(url)
    server.run()


def register(cli: click.Group) -> None:
    cli.add_command(ui)
