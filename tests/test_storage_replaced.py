"""A long-lived reader and another process's `replace` of an object (`verify --repair`
re-encoding it, a writer re-encoding it against another reference): the reader knows
the old encoding (its pack map, the headers it read) until its next refresh, so its
bytes failed their id check and it raised a spurious CorruptObject (never wrong bytes:
ids are checked). ObjectIO now forgets what it knew and reads once more (storage.py
`stale`, objects/packed.py `refresh`). Two processes, in turn: the other process runs
to its end between the reader's reads (no sleeps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.errors import CorruptObject
from modelvc.objects import LocalStore
from modelvc.storage import ObjectIO

REENCODE = """
import sys
from pathlib import Path
from modelvc.objects import LocalStore
from modelvc.storage import ObjectIO
root, oid, ref, raw = sys.argv[1:]
ObjectIO(LocalStore(root)).reencode(oid, ref or None, raw=Path(raw).read_bytes())
"""


def _reencode_elsewhere(root: Path, oid: str, ref: str | None, raw: bytes,
                        tmp: Path) -> None:
    """`oid` re-encoded (against `ref`, or whole) by another process, run to its end."""
    (tmp / "raw").write_bytes(raw)
    p = subprocess.run([sys.executable, "-c", REENCODE, str(root), oid, ref or "",
                        str(tmp / "raw")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]


def _tensors() -> tuple[bytes, bytes]:
    rng = np.random.default_rng(7)
    y = rng.standard_normal((128, 128)).astype(np.float32)
    x = y + rng.standard_normal(y.shape).astype(np.float32) * 1e-3
    return x.tobytes(), y.tobytes()


def _reader(root: Path) -> ObjectIO:
    """A long-lived reader: its pack map never expires by time here (a refresh on a
    loaded machine would otherwise hide the stale read)."""
    store = LocalStore(root)
    store.map_ttl = 1e9
    return ObjectIO(store)


def test_a_packed_copy_repaired_by_another_process_is_read_repaired(tmp_path: Path
                                                                    ) -> None:
    x, y = _tensors()
    scratch = ObjectIO(LocalStore(tmp_path / "scratch"))
    xid = scratch.put_tensor(x, "F32", (128, 128)).row.id
    yid = scratch.put_tensor(y, "F32", (128, 128)).row.id
    enc = {k: bytes(scratch.store.get(k)) for k in (xid, yid)}
    root = tmp_path / "objects"
    LocalStore(root).put_many(list(enc.items()))  # one pack holds both
    (pack,) = [p for p in (root / "packs").iterdir()]
    # Damage x's packed copy in the middle of its first block's payload.
    data = bytearray(pack.read_bytes())
    at = data.find(enc[xid]) + len(enc[xid]) // 3
    data[at] ^= 0xFF
    os.chmod(pack, 0o644)
    pack.write_bytes(bytes(data))
    with pytest.raises(CorruptObject):
        _reader(root).read_tensor(xid, cached=False)  # the damage is real

    reader = _reader(root)
    assert reader.read_tensor(yid) == y  # maps the pack: x is in it
    _reencode_elsewhere(root, xid, None, x, tmp_path)  # verify --repair's step
    assert reader.read_tensor(xid, cached=False) == x


def test_a_loose_object_re_encoded_by_another_process_is_read_anew(tmp_path: Path
                                                                   ) -> None:
    x, y = _tensors()
    root = tmp_path / "objects"
    writer = ObjectIO(LocalStore(root))
    yid = writer.put_tensor(y, "F32", (128, 128)).row.id
    xid = writer.put_tensor(x, "F32", (128, 128)).row.id  # loose, whole
    reader = _reader(root)
    assert reader.read_tensor(xid, cached=False) == x  # knows its header now
    _reencode_elsewhere(root, xid, yid, x, tmp_path)  # now a delta against y
    assert reader.header(xid).ref is None  # the reader still holds the old header
    assert reader.read_tensor(xid, cached=False) == x
    assert reader.header(xid).ref == yid
    assert b"".join(bytes(p) for p in reader.iter_tensor(xid, cached=False)) == x


def _big_tensors() -> tuple[bytes, bytes]:
    """Three blocks each (a block is BLOCK_ELEMENTS elements)."""
    rng = np.random.default_rng(11)
    n = 2 * BLOCK_ELEMENTS + 4096
    y = rng.standard_normal(n).astype(np.float32)
    x = y + rng.standard_normal(n).astype(np.float32) * 1e-3
    return x.tobytes(), y.tobytes()


@pytest.mark.parametrize("verify", [True, False])
def test_an_object_replaced_mid_stream_by_another_process_streams_whole(
        tmp_path: Path, verify: bool) -> None:
    """The replace lands after the reader has its first piece: the old header's block
    offsets then point into the new encoding. The stream restarts from the refreshed
    encoding, skips what it delivered (checked, with verify) and ends bit-exact; before,
    it raised CorruptObject mid-stream (checkout and verify stream this way)."""
    x, y = _big_tensors()
    n = len(x) // 4
    root = tmp_path / "objects"
    writer = ObjectIO(LocalStore(root))
    yid = writer.put_tensor(y, "F32", (n,)).row.id
    xid = writer.put_tensor(x, "F32", (n,)).row.id  # loose, whole
    reader = _reader(root)
    assert len(reader.header(xid).blocks) == 3
    parts = reader.iter_tensor(xid, verify=verify, cached=False)
    got = [bytes(next(parts))]
    _reencode_elsewhere(root, xid, yid, x, tmp_path)  # now a delta against y
    got += [bytes(p) for p in parts]
    assert b"".join(got) == x
    assert reader.header(xid).ref == yid


def test_bytes_delivered_before_the_damage_showed_are_never_taken_for_good(
        tmp_path: Path) -> None:
    """A damaged copy whose first block decodes to wrong bytes without an error (only
    the id check sees it), repaired by another process mid-stream: the consumer
    already holds wrong bytes, so the stream must not end as if whole; it says the
    object changed while it was read and to run the command again."""
    x, _ = _big_tensors()
    n = len(x) // 4
    root = tmp_path / "objects"
    writer = ObjectIO(LocalStore(root))
    xid = writer.put_tensor(x, "F32", (n,)).row.id
    path = next(p for p in root.rglob("*") if p.name == xid[2:])
    b0 = writer.header(xid).blocks[0]
    good = path.read_bytes()
    for at in range(b0.offset + b0.length // 2, b0.offset + b0.length):
        bad = bytearray(good)
        bad[at] ^= 0x01
        os.chmod(path, 0o644)
        path.write_bytes(bytes(bad))
        probe = _reader(root)
        try:
            first = bytes(next(probe.iter_tensor(xid, cached=False)))
        except CorruptObject:
            continue
        if first != x[: len(first)]:
            break  # decodes, silently wrong
    else:
        pytest.skip("no single-byte damage decodes silently here")
    reader = _reader(root)
    parts = reader.iter_tensor(xid, cached=False)
    got = [bytes(next(parts))]
    _reencode_elsewhere(root, xid, None, x, tmp_path)  # verify --repair's step
    with pytest.raises(CorruptObject, match="changed while it was read") as exc:
        got += [bytes(p) for p in parts]
    assert "run the command again" in (exc.value.hint or "")
    assert reader.read_tensor(xid, cached=False) == x  # a new read is whole
