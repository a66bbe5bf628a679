"""A `modelvc server` process for benchmarks: a writer token, the server, its health wait."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from modelvc.serving.runner import free_port


def writer_token(reg_path: Path) -> str:
    """A token of subject `bench` with the writer role on every model (the public API)."""
    from modelvc import Registry

    with Registry.open(reg_path) as reg:
        secret, _ = reg.tokens.create("bench", subject="bench", actor="bench")
        reg.roles.grant("bench", "writer", on="*", actor="bench")
    return secret


def start_server(reg_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`modelvc server` on a free port, answering /healthz; (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    modelvc = Path(sys.executable).with_name("modelvc")
    proc = subprocess.Popen([str(modelvc), "server", "--registry", str(reg_path),
                             "--port", str(port), "--log-level", "warning"])
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
