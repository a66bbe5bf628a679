"""The real CLI against a registry server URL: the same verbs, human and --json output."""

from __future__ import annotations

import json
from pathlib import Path

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.services import clirun
from tests.services.server import ServerProcess, grant_token


def test_cli_verbs_over_a_server_url(tmp_path: Path) -> None:
    Registry.init(tmp_path / "repo").close()
    token = grant_token(tmp_path / "repo", "alice", "admin", "*")
    server = ServerProcess(tmp_path / "repo", tmp_path / "server.log").start()
    env = {"MODELVC_TOKEN": token, "MODELVC_AUTHOR": "alice"}

    def run(*args: str) -> str:  # in this process: the CLI's requests and output under test
        p = clirun.run(["--registry", server.url, *args], env=env, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        return p.stdout

    try:
        base = write_model(tmp_path / "a.safetensors", 1)
        write_model(tmp_path / "b.safetensors", 2, base=base)
        run("commit", "a.safetensors", "--model", "toy")
        v2 = json.loads(run("commit", "b.safetensors", "--model", "toy", "--json"))
        assert v2["number"] == 2 and v2["author"] == "alice"
        assert run("commit", "b.safetensors", "--model", "toy").rstrip().endswith(
            "same files as v2")
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
