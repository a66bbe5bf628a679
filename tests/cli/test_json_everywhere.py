"""Every command takes --json (the README says so): walk the real command tree, ask each
command for its --help, and run the ones that lacked it with --json for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from modelvc.cli.main import build
from tests.cli.test_cli import js, run
from tests.conftest import write_model


def _commands(cmd: click.Command, path: list[str]) -> Iterator[list[str]]:
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, [*path, name])
        if cmd.invoke_without_command:  # e.g. `modelvc audit` runs on its own
            yield path
    else:
        yield path


COMMANDS = list(_commands(build(), []))


def test_the_tree_is_walked() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"commit", "key revoke", "signature export", "remote add", "role revoke", "serve",
            "server", "audit", "audit verify"} <= names
    assert len(COMMANDS) >= 50


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_json(path: list[str]) -> None:
    done = CliRunner().invoke(build(), [*path, "--help"], prog_name="modelvc")
    assert done.exit_code == 0, done.output
    assert "--json" in done.output, f"`modelvc {' '.join(path)}` has no --json"


def _key(proj: Path, name: str) -> Path:
    made = js(["key", "create", name, "--out", "keys"], proj)
    return Path(made["private_key"])


def test_json_of_the_commands_that_lacked_it(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    write_model(tmp_path / "m.safetensors", 1)
    js(["commit", "m.safetensors", "--model", "toy"], tmp_path)

    assert js(["remote", "add", "origin", str(tmp_path / "elsewhere")], tmp_path) == {
        "name": "origin", "url": str(tmp_path / "elsewhere")}
    assert js(["remote", "remove", "origin"], tmp_path) == {"removed": "origin"}
    assert js(["remote", "list"], tmp_path) == {}
    run(["remote", "add", "o2", "x"], tmp_path)
    assert run(["remote", "remove", "o2"], tmp_path).stdout == "remote o2 removed\n"

    js(["role", "grant", "bob", "reader", "--on", "toy"], tmp_path)
    assert js(["role", "revoke", "bob", "--on", "toy"], tmp_path) == {
        "subject": "bob", "scope": "toy", "role": None}

    alice, carol = _key(tmp_path, "alice"), _key(tmp_path, "carol")
    run(["sign", "toy", "--key", str(alice)], tmp_path)
    out = js(["signature", "export", "toy", "toy.sig"], tmp_path)
    assert out == {"path": "toy.sig", "key": "alice"}
    imported = js(["signature", "import", "toy", "toy.sig"], tmp_path)
    assert imported["key"] == "alice" and imported["version"]

    # Two keys signed: export must be told which (it used to pick one silently).
    run(["sign", "toy", "--key", str(carol)], tmp_path)
    two = run(["signature", "export", "toy", "two.sig"], tmp_path, ok=False)
    assert two.returncode == 2, two.stderr
    assert "signatures by 2 keys: alice, carol" in two.stderr and "--key NAME" in two.stderr
    assert not (tmp_path / "two.sig").exists()
    assert js(["signature", "export", "toy", "two.sig", "--key", "carol"], tmp_path)["key"] == \
        "carol"

    revoked = js(["key", "revoke", "carol", "--reason", "left"], tmp_path)
    assert revoked["name"] == "carol" and revoked["revoked_at"]


@pytest.mark.parametrize("flags", [["--advertise", "http://10.0.0.5:8000"],
                                   ["--replica-id", "r1", "--heartbeat", "2"]])
def test_serve_fleet_flags_need_fleet(tmp_path: Path, flags: list[str]) -> None:
    """They used to put the gateway into fleet mode silently (it stopped following its
    channel)."""
    run(["init"], tmp_path)
    done = run(["serve", "toy@production", *flags], tmp_path, ok=False)
    assert done.returncode == 2, done.stderr
    assert "only apply to a fleet gateway" in done.stderr and "add --fleet" in done.stderr
    as_json = run(["serve", "toy@production", *flags, "--json"], tmp_path, ok=False)
    assert json.loads(as_json.stdout)["error"] == "UsageError"


def test_server_json_start_line(tmp_path: Path) -> None:
    from tests.services.server import ServerProcess

    run(["init"], tmp_path)
    server = ServerProcess(tmp_path, tmp_path / "server.log", args=["--json"]).start()
    try:
        first = server.log.read_text().splitlines()
    finally:
        server.stop()
    start = json.loads(first[0])  # stdout's one line comes before any log line
    assert start == {"url": server.url, "registry": str(tmp_path)}
    logged = [json.loads(line) for line in server.log.read_text().splitlines()
              if line.startswith("{")]
    assert any(entry.get("msg") == "started" for entry in logged), logged[:3]
