"""Run the gateway under uvicorn: in the foreground (`modelvc serve`) or on a background
thread (tests, the demo, benchmarks), always stopped cleanly."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from ..canary import Clock
from ..registry import Registry
from .app import build_app
from .config import ServeConfig
from .gateway import Gateway


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _uvicorn_config(gw: Gateway, cfg: ServeConfig, log_level: str) -> uvicorn.Config:
    # httptools and uvloop (the serve extra) when installed: the request path costs
    # about half of what h11 and the asyncio loop cost per request; with httptools,
    # infer requests are answered by the protocol itself (serving/infer_protocol.py).
    from ..httpproto import with_header_timeout

    http = "httptools" if _installed("httptools") else "h11"
    front = build_app(gw)
    proto = with_header_timeout(cfg.header_timeout, http)
    if http == "httptools":
        from .infer_protocol import infer_protocol

        proto = infer_protocol(proto, front.endpoint)
    return uvicorn.Config(front, host=cfg.host, port=cfg.port, log_level=log_level,
                          access_log=False, lifespan="on", timeout_graceful_shutdown=10,
                          http=proto, loop="uvloop" if _installed("uvloop") else "asyncio")


def make_gateway(reg: Registry, cfg: ServeConfig, workdir: Path | None = None,
                 clock: Clock = time.monotonic) -> Gateway:
    gw = Gateway(reg, cfg, workdir=workdir, clock=clock)
    if cfg.fleet is not None:
        from .fleet_agent import FleetAgent

        gw.agent = FleetAgent(gw, cfg.fleet)
    return gw


def check_ports(cfg: ServeConfig) -> None:
    """Conflict, before any model loads, when a port the gateway needs is taken (it
    loaded every model first, then died with a traceback and 'not found''s exit code)."""
    from ..errors import Conflict

    for what, port, flag in (("REST", cfg.port, "--port"),
                             ("gRPC", cfg.grpc_port, "--grpc-port")):
        if not port:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind((cfg.host, port))
            except OSError as exc:
                raise Conflict(f"the {what} port {cfg.host}:{port} is not free ({exc.strerror})",
                               hint=f"stop what listens there (another gateway?) or pass "
                                    f"{flag} with another port") from None


def serve_forever(reg: Registry, cfg: ServeConfig, *, log_level: str = "info") -> None:
    check_ports(cfg)
    # A thread loading a new version hands the GIL back to the event loop after 1 ms
    # instead of 5: a hot swap then delays requests by at most about that.
    sys.setswitchinterval(0.001)
    gw = make_gateway(reg, cfg)
    gw.freeze_gc = True
    uvicorn.Server(_uvicorn_config(gw, cfg, log_level)).run()


class BackgroundServer:
    """`with BackgroundServer(reg, cfg) as srv:` serves at srv.url until the block ends.
    With `port = 0` the system picks a free port as it binds (no window in which another
    process can take it): srv.url names it once started."""

    def __init__(self, reg: Registry, cfg: ServeConfig, *, workdir: Path | None = None,
                 log_level: str = "warning", clock: Clock = time.monotonic) -> None:
        self.gateway = make_gateway(reg, cfg, workdir, clock)
        self.url = f"http://{cfg.host}:{cfg.port}"
        self._server = uvicorn.Server(_uvicorn_config(self.gateway, cfg, log_level))
        self._thread = threading.Thread(target=self._server.run, name="modelvc-serve",
                                        daemon=True)

    def start(self) -> BackgroundServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the gateway did not start on {self.url}")
            self._thread.join(0.02)
        if self._server.servers and self._server.servers[0].sockets:
            host, port = self._server.servers[0].sockets[0].getsockname()[:2]
            self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
