"""A real registry server in a subprocess (uvicorn on create_app), on a free port.

Run as a script: python -m tests.transfer.serverproc REGISTRY PORT
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProc:
    registry: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProc:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.transfer.serverproc", str(self.registry),
                 str(self.port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "MODELVC_AUTHOR": "server"}, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not up:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers, no flushes (what a crash does)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def make_token(registry: Path, subject: str = "ci", role: str = "admin",
               scope: str = "*") -> str:
    """A fresh API token for `subject`, who is granted `role` on `scope`."""
    import secrets

    from modelvc.meta.auth import hash_token
    from modelvc.registry import Registry

    token = "mvc_" + secrets.token_hex(16)
    with Registry.open(registry) as reg:
        reg.meta.create_token(name=f"{subject}-test", subject=subject,
                              secret_hash=hash_token(token), scopes=[], expires_at=None,
                              actor="test")
        reg.meta.grant_role(subject, scope, role, actor="test")
    return token


def main() -> None:
    import uvicorn

    from modelvc.server.app import create_app
    from modelvc.server.state import ServerConfig

    registry, port = sys.argv[1], int(sys.argv[2])
    app = create_app(ServerConfig(registry=registry, port=port))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
