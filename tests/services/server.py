"""`modelvc server` in a subprocess on a free loopback port, and API tokens for it: the one
server-process helper of the tests (transfer, scale-out, server, conformance).

The server processes are forked from a zygote (tests/faults/zygote.py) that has imported
the CLI, the server app and uvicorn: a `python -m modelvc.cli.main server` start costs
~1 s of CPU in imports, and the suite starts well over a hundred servers. Each is still
a process of its own (its own pid, session, database connections and files; killed with
a real SIGKILL); `fork=False` starts a fresh interpreter instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from modelvc.cli.main import CLI_POOL_MB
from modelvc.meta.auth import new_token
from modelvc.registry import Registry
from tests.faults.zygote import Forked, Zygote
from tests.services.ports import free_port


@dataclass
class ServerProcess:
    """`modelvc server --registry REGISTRY --port PORT ARGS...` with `env` added to ours;
    its output goes to `log`. In its own process group, so `kill` is a crash."""

    registry: Path
    log: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | Forked | None = None
    fork: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        args = ["server", "--registry", str(self.registry), "--port", str(self.port),
                *self.args]
        env = {**os.environ, **self.env}
        with self.log.open("ab") as out:
            # The zygote imported the codec with the CLI's pool size (read at import):
            # a server given another needs an interpreter of its own.
            if self.fork and env.get("MODELVC_POOL_MB", CLI_POOL_MB) == CLI_POOL_MB:
                self.proc = _zygote().spawn(args, env, entry="modelvc.cli.main:main",
                                            output=out.fileno(), new_session=True)
            else:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "modelvc.cli.main", *args], stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a start-up wait, not a timed assertion
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:  # plain HTTP: verify=False spares loading the CA bundle (~20 ms CPU a call)
                if httpx.get(self.url + "/healthz", timeout=1, verify=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not come up:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers, no flushes (what a crash does)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (graceful), then the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


# What `modelvc server` imports before it serves (create_app's routers and UI; uvicorn's
# loop, protocol and lifespan modules, imported by its Config.load), imported once in
# the zygote.
PRELOAD = ("modelvc.cli.main", "modelvc.cli.server_cmds", "modelvc.server.app",
           "modelvc.server.api", "modelvc.server.transfer", "modelvc.server.uploads",
           "modelvc.server.mlflow_api", "modelvc.server.hf", "modelvc.server.ui",
           "modelvc.objects.s3", "uvicorn", "uvicorn.loops.auto",
           "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto",
           "uvicorn.lifespan.on")
_server_zygote: Zygote | None = None


def _zygote() -> Zygote:
    global _server_zygote
    if _server_zygote is None or _server_zygote.proc.poll() is not None:
        # `modelvc` sets MODELVC_POOL_MB before the codec is imported (main()), so the
        # zygote imports it with the same value.
        _server_zygote = Zygote(PRELOAD, env={"MODELVC_POOL_MB": CLI_POOL_MB})
    return _server_zygote


def spawn_cli(args: list[str], env: dict[str, str], output: int) -> Forked:
    """`modelvc ARGS` forked from the servers' zygote, its stdout and stderr to the file
    descriptor OUTPUT (`modelvc ui` in tests/ui/conftest.py)."""
    return _zygote().spawn(args, env, entry="modelvc.cli.main:main", output=output)


def grant_token(registry: Path | str, subject: str = "ci", role: str | None = "admin",
                scope: str = "*", *, scopes: list[str] | None = None,
                expires_at: datetime | None = None, revoked: bool = False) -> str:
    """A fresh token for `subject`, bound to `role` on `scope` (no role if None), made
    locally on the registry the server serves."""
    token, digest = new_token()
    with Registry.open(registry) as reg:
        row = reg._meta.create_token(name=f"{subject}-test", subject=subject,
                                    secret_hash=digest, scopes=scopes or [],
                                    expires_at=expires_at, actor="bootstrap")
        if role is not None:
            reg.roles.grant(subject, role, on=scope, actor="bootstrap")
        if revoked:
            reg._meta.revoke_token(row.id, actor="bootstrap")
    return token
