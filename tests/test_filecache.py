"""KnownFiles (filecache.py): a delta's reference read from the file its version was
committed from (or checked out to) instead of decoded from its chain; what is encoded
against such bytes is kept only when they hash to what they must be, so a changed,
truncated or replaced file falls back to the chain and every version stays bit-exact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.filecache import HOLD, KnownFiles, Pending
from modelvc.registry import Registry
from tests.conftest import write_model

BIG = "big.weight"  # a tensor of three blocks


def _model(path: Path, seed: int, base: dict[str, np.ndarray] | None = None
           ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if base is None:
        t = {BIG: rng.standard_normal(BLOCK_ELEMENTS * 2 + 1000).astype(np.float32),
             "small.weight": rng.standard_normal((64, 128)).astype(np.float32)}
    else:
        t = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-3)
             .astype(np.float32) for k, v in base.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path))
    return t


class Counted(KnownFiles):
    """KnownFiles counting the blocks it served (what a fresh process read from files)."""

    served = 0

    def read_block(self, oid: str, i: int, block_bytes: int, nblocks: int,
                   out: memoryview, check: Pending | None = None) -> bool:
        ok = super().read_block(oid, i, block_bytes, nblocks, out, check)
        Counted.served += ok
        return ok


def _fresh(root: Path) -> Registry:
    """The registry as a new process opens it: nothing decoded, nothing cached."""
    r = Registry.open_local(root)
    assert r._io.known is not None
    r._io.known = Counted(r._io.known.path)
    Counted.served = 0
    return r


def _commit_child(root: Path, child: Path) -> tuple[Registry, str]:
    r = _fresh(root)
    v = r.commit(child, model="m", message="child")
    return r, v.id


def _exact(r: Registry, ref: str, src: Path, out: Path) -> None:
    r.checkout(ref, out)
    assert out.joinpath(src.name).read_bytes() == src.read_bytes()
    assert r.verify().ok


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    root = tmp_path / "repo"
    a, b = tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"
    base = _model(a, 0)
    _model(b, 1, base)
    with Registry.init(root) as r:
        r.commit(a, model="m", message="parent")
    return root, a, b


def test_a_fresh_process_reads_the_parent_from_its_file(two: tuple[Path, Path, Path],
                                                        tmp_path: Path) -> None:
    root, _, b = two
    r, _ = _commit_child(root, b)
    assert Counted.served == 4  # both tensors' blocks: 3 + 1, nothing decoded
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def _same_stat_edit(path: Path, offset: int) -> None:
    """Change one byte in place and put size and mtime back: only the hash can tell."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_a_file_changed_in_place_with_the_same_stat_is_not_used(
        two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, a, b = two
    _same_stat_edit(a, a.stat().st_size - 10)  # in the last tensor (small.weight)
    r, _ = _commit_child(root, b)
    assert Counted.served == 3  # big.weight's blocks, unchanged; not small.weight's
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def test_a_block_changed_in_place_fails_the_check_and_the_encode_is_redone(
        two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The blocks of a tensor of several blocks are used as read and hashed on the way:
    one byte changed in a middle block (stat put back) fails Pending.verify after the
    encode, which then decodes the reference from the store: the version is exact and
    the file is not read again."""
    root, a, b = two
    rec = json.loads((root / ".modelvc" / "cache" / "files.json").read_bytes())
    _, data_start, _ = max(rec["files"][0]["tensors"], key=lambda t: t[2])  # big.weight
    _same_stat_edit(a, data_start + BLOCK_ELEMENTS * 4 + 5)  # inside block 1
    r, _ = _commit_child(root, b)
    assert Counted.served == 3 + 1  # big.weight's blocks used, then dropped; small.weight
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def _pending(two: tuple[Path, Path, Path]) -> tuple[Registry, str, int, int, KnownFiles]:
    root, _, _ = two
    r = _fresh(root)
    seg = next(s for s in r._manifest(r.resolve("m").id).files[0].segments if s.tensor == BIG)
    known = r._io.known
    assert known is not None
    return r, seg.id, seg.size, r._io.header(seg.id).block_elements * 4, known


def _read(known: KnownFiles, check: Pending | None, oid: str, size: int, bb: int, i: int
          ) -> bytes | None:
    out = bytearray(min(bb, size - i * bb))
    nblocks = -(-size // bb)
    return bytes(out) if known.read_block(oid, i, bb, nblocks, memoryview(out), check) else None


def test_pending_hashes_blocks_in_any_order_and_reads_the_rest(
        two: tuple[Path, Path, Path]) -> None:
    """Blocks read out of turn are held (up to HOLD) or read again by verify; blocks
    never read are read by verify: the whole is hashed once, whatever the order."""
    r, oid, size, bb, known = _pending(two)
    assert _read(known, None, oid, size, bb, 0) is None  # a larger tensor: only via a check
    for order in ([2, 1, 0], [1], [], [0, 2]):
        check = known.pending(oid, bb)
        assert check is not None and HOLD >= 1
        for i in order:
            got = _read(known, check, oid, size, bb, i)
            assert got == bytes(r._io.decode_block_at(oid, i, cached=False))
        assert check.verify(), order
    r.close()


def test_pending_fails_on_a_change_after_the_blocks_were_read(
        two: tuple[Path, Path, Path]) -> None:
    """A block changed after the encode read it still fails verify when verify reads it
    (a block not read yet), and the file is then given up in this process."""
    root, a, _ = two
    r, oid, size, bb, known = _pending(two)
    check = known.pending(oid, bb)
    assert check is not None
    assert _read(known, check, oid, size, bb, 0) is not None
    rec = json.loads((root / ".modelvc" / "cache" / "files.json").read_bytes())
    data_start = next(off for o, off, _ in rec["files"][0]["tensors"] if o == oid)
    _same_stat_edit(a, data_start + 2 * bb + 5)  # inside block 2, not read yet
    assert not check.verify()
    assert known.pending(oid, bb) is None
    r.close()


def test_a_truncated_file_is_not_used(two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, a, b = two
    with a.open("r+b") as f:
        f.truncate(a.stat().st_size // 2)
    r, _ = _commit_child(root, b)
    assert Counted.served == 0
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def test_a_replaced_file_is_not_used(two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, a, b = two
    other = tmp_path / "other.safetensors"
    _model(other, 7)
    st = a.stat()
    shutil.copyfile(other, a.with_name("new"))
    os.replace(a.with_name("new"), a)  # same path and size, another inode and content
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    r, _ = _commit_child(root, b)
    assert Counted.served == 0
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def test_a_checked_out_file_serves_the_next_commit(two: tuple[Path, Path, Path],
                                                    tmp_path: Path) -> None:
    root, a, b = two
    with _fresh(root) as r:
        r.checkout("m@v1", tmp_path / "co")
    a.unlink()  # the file it was committed from is gone: the checkout's copy serves
    r, _ = _commit_child(root, b)
    assert Counted.served == 4
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def test_a_fifo_in_the_files_place_does_not_block(two: tuple[Path, Path, Path],
                                                  tmp_path: Path) -> None:
    root, a, b = two
    a.unlink()
    os.mkfifo(a)  # opening it for reading would wait for a writer
    r, _ = _commit_child(root, b)
    assert Counted.served == 0
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()


def test_a_damaged_record_is_ignored(two: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, a, b = two
    rec = root / ".modelvc" / "cache" / "files.json"
    assert json.loads(rec.read_bytes())["files"][0]["path"] == str(a.resolve())
    rec.write_text('{"format": 1, "files": [{"path": 3}, "x"]')  # cut short
    r, _ = _commit_child(root, b)
    assert Counted.served == 0
    _exact(r, "m@v2", b, tmp_path / "out")
    r.close()
    assert json.loads(rec.read_bytes())["files"][0]["path"] == str(b.resolve())


def test_switched_off(two: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_FILE_CACHE", "0")
    root, _, _ = two
    with Registry.open_local(root) as r:
        assert r._io.known is None


def test_small_tensors_are_not_recorded(reg: Registry, tmp_path: Path) -> None:
    p = tmp_path / "s" / "model.safetensors"
    write_model(p)  # 76.8 KB embedding, 16 KB layer, small bias/head/ids
    reg.commit(p, model="s")
    rec = json.loads(Path(reg.location, "cache", "files.json").read_bytes())
    sizes = sorted(n for _, _, n in rec["files"][0]["tensors"])
    assert sizes == [16384, 76800]
