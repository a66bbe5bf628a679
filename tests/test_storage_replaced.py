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
