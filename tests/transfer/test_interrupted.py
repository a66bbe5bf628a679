"""push and pull stopped mid-transfer, from the command line: Ctrl-C or SIGTERM to the
CLI while a big object streams (tests/signal_at.py sends it when the transfer's `mark`
returns for the Nth time: chunks of the object went; a push waits there, holding the
sending thread, until the server's upload spool holds them), and the server going away
(SIGKILL to it at the same point). Each ends cleanly (130 / 143 with the one-line
"stopped, nothing half-written, what to run next"; a server gone: an error that says
the same, push and pull alike, and `"resumable": true` in --json output), the re-run
resumes from what the receiver holds, and `modelvc verify` is ok on both sides. Real
CLI processes, a real `modelvc server`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import RESUME_HINT, UNREACHABLE_RESUME_HINT, ModelNotFound
from modelvc.registry import Registry
from modelvc.transfer import pull, push
from tests.services.server import ServerProcess

SIGNAL_AT = Path(__file__).parents[1] / "signal_at.py"
AT = "return:mark:2"  # the object's first 8 MiB chunk went (of four)


def _spools(registry: Path) -> Path:
    """Where the server at REGISTRY keeps its upload sessions. A push is signalled once
    a spool there holds bytes: a chunk handed to the socket is not yet the server's (a
    frame still unread when the connection closes is dropped with it), and signalled
    right after the first went, the push left nothing to resume in 1 run of 8 or so."""
    with Registry.open(registry) as reg:
        return reg.scratch("uploads")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding model `big`: a 32 MiB float32 tensor (stored ~28 MB: four
    chunks, streamed) and a bias."""
    tmp = tmp_path_factory.mktemp("interrupted-src")
    rng = np.random.default_rng(5)
    path = tmp / "big" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"w": rng.standard_normal((2048, 4096), dtype=np.float32),
               "b": np.arange(16, dtype=np.float32)}, str(path))
    with Registry.init(tmp / "src") as reg:
        reg.commit(path.parent, model="big", message="base", author="t")
    return tmp / "src"


SERVED_KILL = True  # conftest.py's `served` ends with kill -9, not SIGTERM


def _cli(registry: Path, *args: str, token: str, at: str | None = None,
         sig: str = "SIGINT", pgid: int = 0, held: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    entry = [str(SIGNAL_AT), at, sig] if at else ["-m", "modelvc.cli.main"]
    env = os.environ | {"MODELVC_AUTHOR": "t", "MODELVC_TOKEN": token}
    if pgid:
        env["SIGNAL_AT_PGID"] = str(pgid)
    if held:
        env["SIGNAL_AT_HELD"] = str(held)
    return subprocess.run([sys.executable, *entry, "--registry", str(registry), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def _interrupted(p: subprocess.CompletedProcess[str], sig: str, what: str) -> None:
    assert "signal-at: sent" in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip() and x != "signal-at: sent"]
    assert p.returncode == 128 + signal.Signals[sig], (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"interrupted by {sig}: `modelvc {what}` stopped"), lines
    assert "none is half-written" in lines[0] and f"({RESUME_HINT})" in lines[0], lines


def _interrupted_json(p: subprocess.CompletedProcess[str], sig: str, what: str) -> None:
    assert "signal-at: sent" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 128 + signal.Signals[sig], (p.returncode, p.stderr)
    doc = json.loads(p.stdout)
    assert doc["error"] == "Interrupted", doc
    assert doc["message"].startswith(f"interrupted by {sig}: `modelvc {what}` stopped"), doc
    assert (doc["hint"], doc.get("resumable")) == (RESUME_HINT, True), doc


def _server_gone(p: subprocess.CompletedProcess[str]) -> None:
    """The one error a push or a pull whose server went away says: what happened, and
    the hint every cut transfer gives; resumable in --json output."""
    assert "signal-at: sent" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 7, (p.returncode, p.stdout, p.stderr)  # StorageError
    doc = json.loads(p.stdout)
    assert doc["error"] == "StorageError", doc
    assert doc["message"].startswith("cannot reach the registry server"), doc
    assert (doc["hint"], doc.get("resumable")) == (UNREACHABLE_RESUME_HINT, True), doc


def _resumed(p: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert p.returncode == 0, p.stdout + p.stderr
    doc: dict[str, object] = json.loads(p.stdout)
    assert len(doc["versions"]) == 1, doc  # type: ignore[arg-type]
    return doc


def _verified(*registries: Path) -> None:
    for reg in registries:
        v = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                            str(reg), "verify"], capture_output=True, text=True, timeout=600)
        assert v.returncode == 0, (reg, v.stdout + v.stderr)


def _same_head(a: Path, b: Path) -> None:
    with Registry.open(a) as ra, Registry.open(b) as rb:
        assert ra.resolve("big@main").id == rb.resolve("big@main").id


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_push_stopped_mid_object_resumes(source: Path, served: tuple[ServerProcess, str],
                                           sig: str) -> None:
    server, token = served
    p = _cli(source, "push", server.url, "big", token=token, at=AT, sig=sig,
             held=_spools(server.registry))
    _interrupted(p, sig, "push")
    # no version recorded before its objects
    with Registry.open(server.registry) as there, pytest.raises(ModelNotFound):
        there.resolve("big@main")
    doc = _resumed(_cli(source, "push", server.url, "big", "--json", token=token))
    # Resumed inside the big object: before, the interrupted command waited until
    # every object was sent whole (the re-run found them all: objects_skipped 4).
    assert int(doc["bytes_resumed"]) > 0, doc  # type: ignore[call-overload]
    _verified(source, server.registry)
    _same_head(source, server.registry)


def test_a_pull_stopped_mid_object_resumes(source: Path, served: tuple[ServerProcess, str],
                                           tmp_path: Path) -> None:
    server, token = served
    with Registry.open(source) as src:
        push(src, server.url, ["big"], token=token)
    Registry.init(tmp_path / "dst").close()
    p = _cli(tmp_path / "dst", "pull", server.url, "big", "--json", token=token, at=AT,
             sig="SIGTERM")
    _interrupted_json(p, "SIGTERM", "pull")
    doc = _resumed(_cli(tmp_path / "dst", "pull", server.url, "big", "--json",
                        token=token))
    assert int(doc["bytes_resumed"]) > 0, doc  # type: ignore[call-overload]
    _verified(tmp_path / "dst", server.registry)
    _same_head(tmp_path / "dst", server.registry)


def test_a_push_whose_server_goes_away_mid_object_says_to_run_it_again(
        source: Path, served: tuple[ServerProcess, str]) -> None:
    server, token = served
    assert server.proc is not None
    p = _cli(source, "push", server.url, "big", "--json", token=token, at=AT,
             sig="SIGKILL", pgid=server.proc.pid)
    _server_gone(p)
    server.start()
    _resumed(_cli(source, "push", server.url, "big", "--json", token=token))
    _verified(source, server.registry)
    _same_head(source, server.registry)


def test_a_pull_whose_server_goes_away_mid_object_says_to_run_it_again(
        source: Path, served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    # The server is killed (-9) while the pull streams the big object: the pull says
    # so and to run it again (no traceback), records nothing, leaves no object that is
    # not whole in the registry, and the re-run resumes inside that object and ends
    # with the same head, verified. (The re-run and the checks in process: CLI
    # start-ups are the cost of this module.)
    server, token = served
    assert server.proc is not None
    with Registry.open(source) as src:
        push(src, server.url, ["big"], token=token)
        oids = {s.id for f in src.manifest("big@main").files for s in f.segments}
    dst = tmp_path / "dst"
    Registry.init(dst).close()
    p = _cli(dst, "pull", server.url, "big", "--json", token=token, at=AT, sig="SIGKILL",
             pgid=server.proc.pid)
    _server_gone(p)
    with Registry.open(dst) as there:
        with pytest.raises(ModelNotFound):
            there.resolve("big@main")  # no version recorded before its objects
        held = [o for o in oids if there._store.has(o)]
        assert len(held) < len(oids)  # the big object did not arrive
        for oid in held:  # what is in the store is whole
            there._io.read_blob(oid)
        assert there.verify().ok
    server.start()
    with Registry.open(dst) as there:
        result = pull(there, server.url, ["big"], token=token)
        # resumed inside the big object, not sent again from its first byte
        assert result.bytes_resumed > 0, result
        assert there.verify().ok
    _same_head(source, dst)
