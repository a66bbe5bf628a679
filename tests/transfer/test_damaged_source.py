"""A pull whose source holds a damaged object: the receiver verifies every object before
it stores it, so the pull fails and records nothing; its error names the version(s) the
object was sent for and says what to do, not only the object id. From a folder and from
a real `modelvc server`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.errors import CorruptObject, ModelNotFound
from modelvc.registry import Registry
from modelvc.transfer import pull
from tests.services.damage import flip_byte
from tests.services.server import ServerProcess, grant_token


def _damaged_source(root: Path, tmp: Path) -> None:
    """Model m, one version: a.safetensors with `w` of two blocks, its second damaged."""
    rng = np.random.default_rng(6)
    src = tmp / "a.safetensors"
    save_file({"b": np.arange(8, dtype=np.float32),
               "w": rng.standard_normal(BLOCK_ELEMENTS + 5000).astype(np.float32)}, str(src))
    with Registry.init(root) as reg:
        reg.commit(src, model="m")
        seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
        blocks = reg._io.header(seg.id).blocks
        flip_byte(reg._store, seg.id, blocks[1].offset + blocks[1].length // 2, 0x10)


@pytest.mark.parametrize("over", ["folder", "server"])
def test_a_damaged_object_at_the_source_names_the_version_and_what_to_do(
        over: str, tmp_path: Path) -> None:
    _damaged_source(tmp_path / "src", tmp_path)
    server = None
    target, token = str(tmp_path / "src"), None
    if over == "server":
        token = grant_token(tmp_path / "src", "rita", "reader", "m")
        server = ServerProcess(tmp_path / "src", tmp_path / "server.log").start()
        target = server.url
    try:
        with Registry.init(tmp_path / "dst") as dst:
            with pytest.raises(CorruptObject) as err:
                pull(dst, target, ["m"], token=token)
            said = str(err.value)
            assert said.startswith("sending m@v1: "), said
            hint = err.value.hint or ""
            assert "nothing was recorded" in hint and "modelvc verify" in hint, said
            with pytest.raises(ModelNotFound):
                dst.resolve("m@main")
            assert dst.verify().ok
    finally:
        if server is not None:
            server.stop()
