"""A remote checkout or load that meets damage: an object damaged in the server's store
(met mid-stream, after the answer's status went) or bytes changed on the way. Either
way the error names the version, file (and tensor) asked for and says what to do, as a
local read does (tests/test_checkout.py), and no file is left behind as if complete.
A real `modelvc server` process (and, for damage on the way, a proxy in front of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.errors import CorruptObject
from modelvc.registry import Registry
from tests.services.damage import flip_byte
from tests.services.server import ServerProcess, grant_token

from .balancer import Balancer


def _served(tmp: Path, damage: bool) -> tuple[ServerProcess, str]:
    """Model m: a.safetensors with a small tensor and `w` of two blocks (its second
    block damaged in the store if DAMAGE: a stream meets it after bytes went)."""
    rng = np.random.default_rng(4)
    src = tmp / "a.safetensors"
    save_file({"b": np.arange(8, dtype=np.float32),
               "w": rng.standard_normal(BLOCK_ELEMENTS + 5000).astype(np.float32)}, str(src))
    with Registry.init(tmp / "served") as reg:
        reg.commit(src, model="m")
        if damage:
            seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
            blocks = reg._io.header(seg.id).blocks
            assert len(blocks) == 2
            flip_byte(reg._store, seg.id, blocks[1].offset + blocks[1].length // 2, 0x10)
    token = grant_token(tmp / "served", "ann", "reader", "m")
    return ServerProcess(tmp / "served", tmp / "server.log").start(), token


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    server, token = _served(tmp_path, damage=True)
    yield server, token
    server.stop()


@pytest.fixture
def sound(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    server, token = _served(tmp_path, damage=False)
    yield server, token
    server.stop()


def _nothing_written(out: Path) -> None:
    left = [p for p in out.rglob("*")] if out.exists() else []
    assert not [p for p in left if p.is_file()], left  # no file, no temp file


def test_a_damaged_object_on_the_server_is_named_not_a_dropped_connection(
        damaged: tuple[ServerProcess, str], tmp_path: Path) -> None:
    """The server meets the damaged block mid-stream, after the status and length went:
    it can only cut the answer. The client asks once more with `check`, and the server
    then verifies before answering: the error names m@v1, the file (and the tensor for
    a load) and says to run verify, instead of "cannot reach the server"."""
    server, token = damaged
    out = tmp_path / "out"
    with Registry.open(server.url, token=token) as remote:
        with pytest.raises(CorruptObject) as err:
            remote.checkout("m@v1", out)
        said = str(err.value)
        assert said.startswith("m@v1, a.safetensors: "), said
        assert said.count("m@v1") == 1, said  # named once, by the server
        assert "modelvc verify" in (err.value.hint or ""), said
        _nothing_written(out)
        tensors = remote.load("m@v1")
        assert tensors["b"].tolist() == list(range(8))  # the sound tensor still loads
        with pytest.raises(CorruptObject) as err:
            tensors["w"]
        said = str(err.value)
        assert said.startswith("m@v1, a.safetensors, tensor 'w': "), said
        assert "modelvc verify" in (err.value.hint or ""), said


def test_bytes_changed_on_the_way_name_the_version_and_file(
        sound: tuple[ServerProcess, str], tmp_path: Path) -> None:
    """Something between the server and the client flips a byte of every file and tensor
    it forwards: the sha256 (BLAKE3 for a tensor) check fails, and the error names the
    version and file as a local read's does, with what to do; nothing is written."""
    server, token = sound

    def flip(path: str, body: bytes) -> bytes:
        if "/files/" not in path and "/tensors/" not in path:
            return body
        changed = bytearray(body)
        changed[len(body) // 2] ^= 0x01
        return bytes(changed)

    out = tmp_path / "out"
    with Balancer([server.url], lambda m, p: 0, alter=flip) as proxy, \
            Registry.open(proxy.url, token=token) as remote:
        with pytest.raises(CorruptObject) as err:
            remote.checkout("m@v1", out)
        said = str(err.value)
        assert said.startswith("m@v1, a.safetensors: the file arrived damaged"), said
        hint = err.value.hint or ""
        assert "run the checkout again" in hint and "modelvc verify" in hint, said
        _nothing_written(out)
        with pytest.raises(CorruptObject) as err:
            remote.load("m@v1")["w"]
        said = str(err.value)
        assert said.startswith("m@v1, a.safetensors, tensor 'w': "), said
        assert "modelvc verify" in (err.value.hint or ""), said


def test_a_hub_download_of_a_damaged_file_ends_short_never_complete(
        damaged: tuple[ServerProcess, str]) -> None:
    """A Hub client (or any HTTP client) cannot be told why: but the answer must not
    look complete. The server holds back each object's last piece until its id is
    checked, so the damaged object cuts the body short of its Content-Length, which
    every client takes for a failed download (it was sent whole, with wrong bytes)."""
    server, token = damaged
    with httpx.Client(base_url=server.url, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as c, \
            pytest.raises(httpx.RemoteProtocolError), \
            c.stream("GET", "/m/resolve/main/a.safetensors") as r:
        assert r.status_code == 200
        for _ in r.iter_bytes():
            pass
