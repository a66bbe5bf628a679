"""`modelvc ui` refuses a taken port with a clear error (and --json says it as JSON)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from modelvc.registry import Registry


def test_taken_port(tmp_path: Path) -> None:
    Registry.init(tmp_path / "repo").close()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                              str(tmp_path / "repo"), "ui", "--port", str(port),
                              "--no-browser", "--json"], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode == 2, out
    err = json.loads(out.stdout)
    assert err["error"] == "UsageError" and f"port {port}" in err["message"]
    assert "--port 0" in err["hint"]
