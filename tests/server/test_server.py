"""The server process: config by file and environment, health, OpenAPI, structured
logs, anonymous access, graceful shutdown, and the token/role CLI locally and remotely."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from modelvc.errors import Unauthenticated, UsageError
from modelvc.registry import Registry
from modelvc.server.config import load_config
from tests.conftest import write_model
from tests.services import clirun
from tests.services.server import ServerProcess, grant_token


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (tests/services/clirun.py): its requests and output are
    under test, not its process."""
    return clirun.run(args, env=env)


def test_config_precedence(tmp_path: Path) -> None:
    f = tmp_path / "server.yaml"
    f.write_text("registry: /r\nport: 9000\nanonymous_read: true\nlog_level: debug\n")
    cfg = load_config(f, env={"MODELVC_SERVER_PORT": "9100"}, host="0.0.0.0")
    assert (cfg.registry, cfg.port, cfg.host, cfg.anonymous_read) == ("/r", 9100, "0.0.0.0",
                                                                      True)
    assert load_config(None, env={"MODELVC_SERVER_REGISTRY": "/x"}, port=1).port == 1
    f.write_text("registry: /r\nprot: 1\n")
    with pytest.raises(UsageError, match="unknown setting 'prot'"):
        load_config(f, env={})
    with pytest.raises(UsageError, match="needs a registry"):
        load_config(None, env={})
    with pytest.raises(UsageError, match="must be an integer"):
        load_config(None, env={"MODELVC_SERVER_REGISTRY": "/r", "MODELVC_SERVER_PORT": "x"})


def test_server_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with Registry.init(repo) as reg:
        write_model(tmp_path / "m.safetensors")
        reg.commit(tmp_path / "m.safetensors", model="m")
    token = grant_token(repo, "alice", "admin")
    cfg = tmp_path / "server.toml"
    cfg.write_text('log_level = "info"\nanonymous_read = false\n')
    server = ServerProcess(repo, tmp_path / "log", args=["--config", str(cfg)]).start()
    try:
        assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
        spec = httpx.get(server.url + "/openapi.json").json()
        assert "/api/v1/resolve" in spec["paths"] and "/api/v1/models/{model}/commits" in (
            spec["paths"])
        r = httpx.get(server.url + "/api/v1/models")
        assert r.status_code == 401 and r.json()["error"] == "Unauthenticated"
        assert r.json()["hint"]
        with Registry.open(server.url) as anon, pytest.raises(Unauthenticated):
            anon.models()
        r = httpx.get(server.url + "/api/v1/models", headers={
            "Authorization": f"Bearer {token}", "X-Request-Id": "req-42"})
        assert r.json() == ["m"] and r.headers["x-request-id"] == "req-42"
    finally:
        rc = server.stop()
    assert rc in (0, -signal.SIGTERM)
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
    access = [x for x in lines if x["logger"] == "modelvc.server.access"]
    hit = next(x for x in access if x.get("request_id") == "req-42")
    assert (hit["principal"], hit["status"], hit["path"]) == ("alice", 200, "/api/v1/models")
    assert [x["msg"] for x in lines if x["logger"] == "modelvc.server"][-1] == "stopped"


def test_token_and_role_cli_local_then_remote(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    Registry.init(repo).close()
    env = {"MODELVC_AUTHOR": "root"}
    assert cli("--registry", str(repo), "role", "grant", "ops", "admin", "--on", "*",
               env=env).returncode == 0
    out = cli("--registry", str(repo), "token", "create", "laptop", "--subject", "ops",
              "--expires", "30d", "--json", env=env)
    assert out.returncode == 0, out.stderr
    admin_token = json.loads(out.stdout)["token"]
    server = ServerProcess(repo, tmp_path / "log").start()
    try:
        remote = {"MODELVC_TOKEN": admin_token}
        assert cli("--registry", server.url, "role", "grant", "bob", "reader", "--on", "m*",
                   env=remote).returncode == 0
        out = cli("--registry", server.url, "token", "create", "ci", "--subject", "bob",
                  "--scope", "reader", "--json", env=remote)
        assert out.returncode == 0, out.stderr
        made = json.loads(out.stdout)
        with Registry.open(server.url, token=made["token"]) as bob:
            assert bob.models() == []
        listed = json.loads(cli("--registry", server.url, "token", "list", "--json",
                                env=remote).stdout)
        assert {t["subject"] for t in listed} == {"ops", "bob"}
        assert all("secret" not in json.dumps(t) for t in listed)
        assert cli("--registry", server.url, "token", "revoke", made["info"]["id"],
                   env=remote).returncode == 0
        with Registry.open(server.url, token=made["token"]) as bob, pytest.raises(
                Unauthenticated, match="revoked"):
            bob.models()
        denied = cli("--registry", server.url, "token", "list",
                     env={"MODELVC_TOKEN": made["token"]})
        assert denied.returncode == 8 and "revoked" in denied.stderr
    finally:
        server.stop()
    with Registry.open(repo) as reg:
        actions = [(e.actor, e.action) for e in reg.audit()]
    assert actions == [("root", "role-grant"), ("root", "token-create"),
                       ("ops", "role-grant"), ("ops", "token-create"), ("ops", "token-revoke")]
