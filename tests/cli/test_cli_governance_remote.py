"""The real CLI's key, sign, signature, gate and policy commands against a registry
server URL (they used the embedded registry's internals and failed on a URL): the same
results as on a folder, run as the token's subject, refused without the role."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry
from modelvc.signing import bundle, keys
from tests.conftest import write_model
from tests.services import clirun
from tests.services.server import ServerProcess, grant_token

POLICY = """\
version: 1
models:
  toy:
    channels:
      production:
        gates:
          - metric: "accuracy >= 0.9"
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    Registry.init(tmp_path / "repo").close()
    tokens = {"alice": grant_token(tmp_path / "repo", "alice", "admin", "*"),
              "wendy": grant_token(tmp_path / "repo", "wendy", "writer", "toy")}
    srv = ServerProcess(tmp_path / "repo", tmp_path / "server.log").start()
    try:
        yield srv, tokens
    finally:
        srv.stop()


def runner(tmp: Path, url: str, token: str) -> Run:
    """The CLI in this process (tests/services/clirun.py): what it sends and says is under
    test here, not its process."""
    env = {"MODELVC_TOKEN": token, "MODELVC_AUTHOR": "not-the-subject"}

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        p = clirun.run(["--registry", url, *args], env=env, cwd=tmp)
        assert p.returncode == code, (args, p.stdout, p.stderr)
        return p

    return run


def test_keys_and_signatures_over_a_server_url(
        tmp_path: Path, server: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, tokens = server
    run = runner(tmp_path, srv.url, tokens["alice"])
    write_model(tmp_path / "a.safetensors", 1)
    run("commit", "a.safetensors", "--model", "toy", "--metric", "accuracy=0.95")

    made = json.loads(run("key", "create", "alice", "--out", "keys", "--json").stdout)
    assert Path(made["private_key"]).is_file()  # the private key stays on this side
    listed = json.loads(run("key", "list", "--json").stdout)
    assert [(k["name"], k["revoked_at"]) for k in listed] == [("alice", None)]

    signed = json.loads(run("sign", "toy@v1", "--key", "keys/alice.key", "--json").stdout)
    assert (signed["key"], signed["signer"]) == ("alice", "alice")  # the token's subject
    ok = json.loads(run("verify-signature", "toy@v1", "--json").stdout)
    assert ok["ok"] and [s["status"] for s in ok["signatures"]] == ["valid"]
    run("signature", "export", "toy@v1", "exported.sig")
    assert json.loads((tmp_path / "exported.sig").read_text())  # a model-signing bundle

    # A bundle made elsewhere (as the model_signing tool does) with bob's registered key.
    bob = keys.generate()
    (tmp_path / "bob.pub").write_text(keys.public_pem(bob.public_key()))
    run("key", "add", "bob", "bob.pub")
    v1 = Registry.open(srv.url, token=tokens["alice"])
    try:
        text = bundle.make(bob, bundle.statement(v1.manifest("toy@v1"), v1.resolve("toy").id))
    finally:
        v1.close()
    (tmp_path / "bob.sig").write_text(text)
    assert "by key bob" in run("signature", "import", "toy@v1", "bob.sig").stdout
    assert json.loads(run("verify-signature", "toy@v1", "--key", "bob", "--json").stdout)["ok"]

    # A bundle over another version is refused, and nothing is stored.
    write_model(tmp_path / "b.safetensors", 2)
    run("commit", "b.safetensors", "--model", "toy")
    wrong = run("signature", "import", "toy@v2", "bob.sig", code=6)
    assert "does not describe toy@v2" in wrong.stderr
    assert run("verify-signature", "toy@v2", "--json", code=8).stdout

    run("key", "revoke", "bob", "--reason", "left")
    refused = run("verify-signature", "toy@v1", "--key", "bob", "--json", code=8)
    assert json.loads(refused.stdout)["ok"] is False

    audit = json.loads(run("audit", "--json").stdout)
    acts = [(e["action"], e["actor"]) for e in audit if e["action"].startswith(("key", "sign"))]
    assert acts == [("key-add", "alice"), ("sign", "alice"), ("key-add", "alice"),
                    ("sign-import", "alice"), ("key-revoke", "alice")]

    # A writer on the model may not register keys (they change what every model trusts).
    writer = runner(tmp_path, srv.url, tokens["wendy"])
    denied = writer("key", "add", "eve", "bob.pub", "--json", code=8)
    assert "admin role" in denied.stdout


def test_gates_and_policy_over_a_server_url(tmp_path: Path,
                                            server: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, tokens = server
    run = runner(tmp_path, srv.url, tokens["alice"])
    writer = runner(tmp_path, srv.url, tokens["wendy"])
    write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2)
    run("commit", "a.safetensors", "--model", "toy", "--metric", "accuracy=0.95")
    run("commit", "b.safetensors", "--model", "toy", "--metric", "accuracy=0.5")
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY))

    assert "no policy applied" in run("policy", "show").stdout
    denied = writer("policy", "apply", "policy.yaml", "--json", code=8)
    assert "admin role" in denied.stdout
    applied = json.loads(run("policy", "apply", "policy.yaml", "--json").stdout)
    assert applied["changed"] is True
    shown = json.loads(run("policy", "show", "--json").stdout)
    assert (shown["digest"], shown["body"]) == (applied["digest"], textwrap.dedent(POLICY))
    assert json.loads(run("policy", "apply", "policy.yaml", "--json").stdout)[
        "changed"] is False

    # The gates run on the server, recorded as the token's subject.
    good = json.loads(writer("gate", "run", "toy@v1", "--channel", "production",
                             "--json").stdout)
    assert good["passed"] and good["applied"] and good["actor"] == "wendy"
    bad = writer("gate", "run", "toy@v2", "--channel", "production", "--json", code=5)
    assert json.loads(bad.stdout)["passed"] is False
    # A policy text or a data path names commands and files on the server: admins only.
    writer("gate", "run", "toy@v1", "--channel", "production", "--policy", "policy.yaml",
           code=8)

    runs = json.loads(run("gate", "show", "toy@v1", "--json").stdout)
    assert [(r["channel"], r["passed"], r["actor"]) for r in runs] == [
        ("production", True, "wendy")]
    report = json.loads(run("gate", "show", "toy@v1", "--report", "--json").stdout)
    assert report["version"] == good["version"] and report["passed"] is True
    assert "FAILED" in run("gate", "show", "toy@v2").stdout

    run("promote", "toy@v2", "--to", "production", code=5)  # its gates failed
    run("promote", "toy@v1", "--to", "production")
