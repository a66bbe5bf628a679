"""push / pull / clone against real server processes (uvicorn on create_app)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import ModelNotFound, PermissionDenied, StorageError
from modelvc.registry import Registry
from modelvc.transfer import HttpEnd, clone, local_end, pull, push, transfer
from tests.services import clirun
from tests.services.server import ServerProcess, grant_token
from tests.transfer.conftest import Trainer


def test_push_pull_clone_through_a_server(
        server: ServerProcess, make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a = make_reg("a")
    t = Trainer(a, tmp_path)
    t.commit()
    v2 = t.commit()
    a.promote("bert@v2", "production", create=True)
    r = push(a, server.url, ["bert", "bert@production"])
    assert len(r.versions) == 2 and {x.result for x in r.refs} == {"created", "promoted"}
    c, _rc = clone(server.url, tmp_path / "c")
    try:
        assert c.resolve("bert@production").id == v2
        assert not c.verify().corrupt
        v3 = t.commit()
        push(a, server.url, ["bert@main"])
        assert pull(c, "origin", ["bert"]).versions == [v3]
        assert c.resolve("bert@main").id == v3
    finally:
        c.close()


def test_a_fine_tune_push_sends_about_its_stored_delta(
        server: ServerProcess, make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a = make_reg("a")
    t = Trainer(a, tmp_path)
    t.commit()
    push(a, server.url, ["bert"])
    tuned = a.resolve(f"bert@{t.commit()}")
    end = HttpEnd(server.url)
    try:
        r = transfer(local_end(a), end, ["bert@main"])
    finally:
        end.close()
    assert r.versions == [tuned.id]
    # Every byte of the version the server lacked is its stored delta plus pack framing.
    assert end.bytes_up <= tuned.stored_size + 2048
    assert end.bytes_up < 0.7 * tuned.raw_size


def test_a_reader_cannot_push(server: ServerProcess, make_reg: Callable[[str], Registry],
                             tmp_path: Path) -> None:
    a = make_reg("a")
    Trainer(a, tmp_path).commit()
    token = grant_token(server.registry, "rita", "reader")
    with pytest.raises(PermissionDenied):
        push(a, server.url, ["bert"], token=token)
    with Registry.open(server.registry) as srv, pytest.raises(ModelNotFound):
        srv.versions("bert")


def _big_model(path: Path, seed: int) -> None:
    """~70 MB of incompressible tensors: packs and one streamed object."""
    rng = np.random.default_rng(seed)
    tensors = {f"layer.{i}.weight": rng.standard_normal((1000, 1000)).astype(np.float32)
               for i in range(14)}
    tensors["embed.weight"] = rng.standard_normal((3000, 1000)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def test_push_resumes_after_the_server_is_killed_mid_transfer(
        server: ServerProcess, make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a = make_reg("a")
    _big_model(tmp_path / "big" / "model.safetensors", 0)
    v = a.commit(tmp_path / "big", model="big")

    def kill_after_first_objects(done: int, total: int) -> None:
        if done > 0:
            server.kill()

    with pytest.raises(StorageError):
        push(a, server.url, ["big"], progress=kill_after_first_objects, jobs=2)
    with Registry.open(server.registry) as srv:  # nothing partial is visible
        with pytest.raises(ModelNotFound):
            srv.versions("big")
        assert not srv.verify().corrupt
    server.start()
    r = push(a, server.url, ["big"])
    assert r.versions == [v.id] and r.objects_skipped > 0  # what landed was not resent
    with Registry.open(server.registry) as srv:
        report = srv.verify()
        assert not report.corrupt and not report.broken_versions
        assert srv.resolve("big@main").id == v.id
        got = srv.load("big@main")["embed.weight"].tobytes()
        assert got == a.load("big@main")["embed.weight"].tobytes()
    c, _ = clone(server.url, tmp_path / "c")  # the large object streams back down
    with c:
        assert c.load("big@main")["embed.weight"].tobytes() == got


def test_server_to_server(server: ServerProcess, make_reg: Callable[[str], Registry],
                          tmp_path: Path) -> None:
    a = make_reg("a")
    t = Trainer(a, tmp_path)
    t.commit()
    t.commit()
    push(a, server.url, ["bert"])
    Registry.init(tmp_path / "mirror").close()
    token2 = grant_token(tmp_path / "mirror")
    other = ServerProcess(tmp_path / "mirror", tmp_path / "mirror.log").start()
    src, dst = HttpEnd(server.url), HttpEnd(other.url, token=token2)
    try:
        r = transfer(src, dst, ["bert"])
        assert len(r.versions) == 2
    finally:
        src.close()
        dst.close()
        other.stop()
    with Registry.open(tmp_path / "mirror") as m:
        assert m.resolve("bert@main").id == a.resolve("bert@main").id
        assert not m.verify().corrupt


def test_cli_push_and_clone(server: ServerProcess, make_reg: Callable[[str], Registry],
                            tmp_path: Path) -> None:
    a = make_reg("a")
    Trainer(a, tmp_path).commit()
    env = {"MODELVC_REGISTRY": str(tmp_path / "a")}

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = clirun.run(args, env=env)  # the command line, in this process
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    cli("remote", "add", "hub", server.url)
    out = cli("push", "hub", "bert", "--json").stdout
    assert len(json.loads(out)["versions"]) == 1
    out = cli("clone", server.url, str(tmp_path / "c"), "--json").stdout
    assert json.loads(out)["refs"][0]["result"] == "created"
    bad = cli("push", "hub", "bert", "--token", "wrong", "--json", code=8)
    assert bad.returncode == 8 and json.loads(bad.stdout)["error"] == "Unauthenticated"
