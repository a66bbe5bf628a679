"""The real CLI against a registry server URL: the same verbs, human and --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token


def test_cli_verbs_over_a_server_url(tmp_path: Path) -> None:
    Registry.init(tmp_path / "repo").close()
    token = grant_token(tmp_path / "repo", "alice", "admin", "*")
    server = ServerProcess(tmp_path / "repo", tmp_path / "server.log").start()
    env = {**os.environ, "MODELVC_TOKEN": token, "MODELVC_AUTHOR": "alice"}
    env.pop("MODELVC_REGISTRY", None)

    def run(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry", server.url,
                            *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        return p.stdout

    try:
        base = write_model(tmp_path / "a.safetensors", 1)
        write_model(tmp_path / "b.safetensors", 2, base=base)
        run("commit", "a.safetensors", "--model", "toy")
        v2 = json.loads(run("commit", "b.safetensors", "--model", "toy", "--json"))
        assert v2["number"] == 2 and v2["author"] == "alice"
        assert "production -> v1" in run("promote", "toy@v1", "--to", "production", "--create")
        run("promote", "toy@v2", "--to", "production")
        assert "rolled back to v1" in run("rollback", "toy", "production", "-r", "slow")
        hist = run("channel", "history", "toy", "production")
        assert "v2 -> v1" in hist and "slow" in hist and "alice" in hist
        refs = run("refs", "toy")
        assert "channel  production" in refs and "v1" in refs
        assert "changed" in run("diff", "toy@v1", "toy@v2")
        run("checkout", "toy@v2", str(tmp_path / "out.safetensors"))
        assert (tmp_path / "out.safetensors").read_bytes() == (
            tmp_path / "b.safetensors").read_bytes()
    finally:
        server.stop()
