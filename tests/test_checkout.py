"""Checkout: bit-exact through delta chains and exports, and a corrupt object is named."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.codec import BLOCK_ELEMENTS
from modelvc.codec.buffers import POOL
from modelvc.errors import AlreadyExists, CorruptObject, StorageError
from modelvc.registry import Registry
from tests.services.damage import flip_byte


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even F32 -> BF16 bits, as an exporter (torch .to(bfloat16)) does."""
    u = a.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_exports_of_chain_ends_check_out_bit_exact(reg: Registry, tmp_path: Path) -> None:
    """An fp32 chain three links deep, then a bf16 export of its end: the export decodes
    through the fp32 chain and its cast link in one pass, block after block."""
    rng = np.random.default_rng(0)
    n = BLOCK_ELEMENTS + 4321  # two blocks
    w = rng.standard_normal(n).astype(np.float32)
    step = (1e-3 * rng.standard_normal(n)).astype(np.float32)
    files = []
    for i in range(5):
        w = (w + step * np.float32(1 + 0.1 * i)).astype(np.float32)
        path = tmp_path / f"ck{i}.safetensors"
        save_file({"w": w, "b": w[:77].copy()}, str(path))
        reg.commit(path, model="m", branch="train")
        files.append(path)
    export = tmp_path / "bf16.safetensors"
    bits = _bf16(w)
    bits[::1000] ^= 1  # an exporter that rounds a few values differently
    raw = bits.view(np.uint8).tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [n],
                               "data_offsets": [0, len(raw)]}}).encode()
    export.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    v = reg.commit(export, model="m", branch="export", parent="m@train")
    assert v.stored_size < 0.02 * v.raw_size
    for ref, src in [("m@train", files[-1]), ("m@export", export)]:
        with Registry.open(reg._layout.root) as fresh:  # nothing decoded before
            out = tmp_path / f"out-{src.name}"
            fresh.checkout(ref, out)
            assert out.read_bytes() == src.read_bytes()
    POOL.clear()


def test_a_corrupt_raw_plane_is_named_and_nothing_is_written(reg: Registry,
                                                             tmp_path: Path) -> None:
    """Mantissa planes are stored raw (no zstd checksum over them): the file's sha256
    catches a flipped bit, and checkout names the object before anything appears."""
    rng = np.random.default_rng(1)
    src = tmp_path / "a.safetensors"
    save_file({"w": rng.standard_normal(100_000).astype(np.float32)}, str(src))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
    block = reg._io.header(seg.id).blocks[0]
    payload_head = 2 + 4 * 4  # itemsize, raw mask, 4 plane lengths
    data = reg._store.get(seg.id)
    assert data[block.offset + 1] & 1, "plane 0 of random floats is stored raw"
    flip_byte(reg._store, seg.id, block.offset + payload_head + 1234, 0x10)
    dest = tmp_path / "out"
    with Registry.open(reg._layout.root) as fresh, pytest.raises(CorruptObject) as err:
        fresh.checkout("m@v1", dest)
    assert seg.id[:12] in str(err.value)
    assert not dest.exists() or not any(dest.rglob("*.safetensors"))


@pytest.mark.parametrize("where", ["checksum", "data"])
def test_a_compressed_plane_is_checked_by_the_segments_id(reg: Registry, tmp_path: Path,
                                                          where: str) -> None:
    """Checkout skips zstd frames' own checksums (each segment's BLAKE3 covers its
    bytes): a frame whose checksum alone is wrong still gives the right bytes; garbled
    frame data is caught (by zstd, or by the id and then the checked re-read) and
    named, nothing written."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal(100_000).astype(np.float32)
    src = tmp_path / "a.safetensors"
    save_file({"w": w}, str(src))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
    block = reg._io.header(seg.id).blocks[0]
    data = reg._store.get(seg.id)
    lengths = struct.unpack_from("<4I", data, block.offset + 2)
    assert not data[block.offset + 1] >> 3 & 1, "the exponent plane is compressed"
    start = block.offset + 2 + 4 * 4 + sum(lengths[:3])
    assert data[start + 4] & 0x04, "its frame carries a checksum"
    at = start + lengths[3] - 1 if where == "checksum" else start + lengths[3] // 2
    flip_byte(reg._store, seg.id, at, 0x10)
    dest = tmp_path / "out"
    with Registry.open(reg._layout.root) as fresh:
        if where == "checksum":
            fresh.checkout("m@v1", dest)
            assert (dest / "a.safetensors").read_bytes() == src.read_bytes()
            assert fresh._store.get(seg.id)[start + 4] & 0x04  # the stored flag is kept
            return
        with pytest.raises(CorruptObject) as err:
            fresh.checkout("m@v1", dest)
    # The re-read checks the frame's checksum (zstd names the plane, checkout the file).
    assert "a.safetensors: byte plane 3" in str(err.value)
    assert not dest.exists() or not any(dest.rglob("*.safetensors"))


REPAIR = """
import sys
from pathlib import Path
from modelvc.objects import open_store
from modelvc.storage import ObjectIO
url, oid, raw = sys.argv[1:]
ObjectIO(open_store(url)).reencode(oid, None, raw=Path(raw).read_bytes())
"""


def test_an_object_repaired_by_another_process_during_checkout_is_written_whole(
        reg: Registry, tmp_path: Path) -> None:
    """A checkout streams a damaged copy (a raw mantissa plane: it decodes, to wrong
    bytes) while another process repairs the object (`verify --repair`'s step). The
    file does not hash to its ids; the objects read fine now, so checkout used to raise
    "does not rebuild"; it now forgets what it knew and writes the file once more."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(2 * BLOCK_ELEMENTS + 4096).astype(np.float32)
    src = tmp_path / "m.safetensors"
    save_file({"a": a, "b": rng.standard_normal(64).astype(np.float32)}, str(src))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "a")
    good = bytes(reg._store.get(seg.id))
    block = reg._io.header(seg.id).blocks[0]
    assert good[block.offset + 1] & 1, "plane 0 of random floats is stored raw"
    flip_byte(reg._store, seg.id, block.offset + 2 + 4 * 4 + 1234, 0x10)
    (tmp_path / "raw").write_bytes(a.tobytes())
    repaired = []

    def progress(done: int, total: int) -> None:
        if done >= a.nbytes and not repaired:  # a's segment is written: repair it now
            p = subprocess.run([sys.executable, "-c", REPAIR, reg._layout.objects_url,
                                seg.id, str(tmp_path / "raw")],
                               capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-3000:]
            repaired.append(True)

    dest = tmp_path / "out.safetensors"
    with Registry.open(reg._layout.root) as fresh:
        fresh.checkout("m@v1", dest, progress=progress)
    assert repaired
    assert dest.read_bytes() == src.read_bytes()


def test_a_damaged_object_is_named_with_the_version_file_and_what_to_do(
        reg: Registry, tmp_path: Path) -> None:
    """A read that meets a damaged object (a streamed tensor of two blocks here) says
    which version, file and tensor the user asked for, not only the object id, and
    what to do about it; checkout and load alike."""
    rng = np.random.default_rng(2)
    src = tmp_path / "a.safetensors"
    save_file({"w": rng.standard_normal(BLOCK_ELEMENTS + 1000).astype(np.float32),
               "b": np.zeros(8, np.float32)}, str(src))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[0].segments if s.tensor == "w")
    block = reg._io.header(seg.id).blocks[0]
    assert len(reg._io.header(seg.id).blocks) == 2  # checkout streams it
    flip_byte(reg._store, seg.id, block.offset + block.length // 2, 0x10)
    with Registry.open(reg._layout.root) as fresh:
        with pytest.raises(CorruptObject) as err:
            fresh.checkout("m@v1", tmp_path / "out")
        said = str(err.value)
        assert "m@v1" in said and "a.safetensors" in said and seg.id[:12] in said, said
        assert "modelvc verify" in (err.value.hint or ""), said
        with pytest.raises(CorruptObject) as err:
            fresh.load("m@v1")["w"]
        said = str(err.value)
        assert "m@v1" in said and "a.safetensors" in said and "'w'" in said, said
        assert "modelvc verify" in (err.value.hint or ""), said


def test_a_destination_that_cannot_be_written_says_what_to_do(
        reg: Registry, tmp_path: Path) -> None:
    """A destination below a file (or anywhere the OS refuses) is a StorageError that
    names the file and says what to choose instead (it had no hint)."""
    src = tmp_path / "a.safetensors"
    save_file({"w": np.zeros(8, np.float32)}, str(src))
    reg.commit(src, model="m")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError) as err:
        reg.checkout("m@v1", tmp_path / "afile" / "sub")
    assert "afile" in err.value.message, err.value
    assert "choose a destination folder you can write to" in (err.value.hint or ""), err.value


def _folder(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    d = tmp_path / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_a_folder_holding_other_files_is_refused_and_force_never_deletes(
        reg: Registry, tmp_path: Path) -> None:
    """Checking v2 out over v1's checkout mixed v1's files with v2's: refused, the folder
    untouched; --force writes v2's files and leaves every other file alone (a checkout
    into a project folder with --force must never empty it)."""
    v1 = {"config.json": b"{}", "model.bin.raw": b"v1 weights", "tok/vocab": b"a"}
    v2 = {"config.json": b'{"ft": 1}', "model_ft.bin.raw": b"v2 weights"}
    reg.commit(_folder(tmp_path, "v1", v1), model="net")
    reg.commit(_folder(tmp_path, "v2", v2), model="net")
    out = tmp_path / "out"
    reg.checkout("net@v1", out)
    with pytest.raises(AlreadyExists, match="would mix") as err:
        reg.checkout("net@v2", out)
    assert "no other file is removed" in (err.value.hint or "")
    assert _tree(out) == v1  # nothing written
    (out / "config.json").unlink()  # only files v2 does not have: refused too
    with pytest.raises(AlreadyExists, match=r"holds 2 file\(s\) net@v2 does not have"):
        reg.checkout("net@v2", out)
    res = reg.checkout("net@v2", out, force=True)
    assert _tree(out) == {**v2, "model.bin.raw": b"v1 weights", "tok/vocab": b"a"}
    assert res.others == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_failed_checkout_leaves_the_destination_as_it_was(reg: Registry,
                                                            tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    src = _folder(tmp_path, "src", {"config.json": b"{}", "sub/extra.txt": b"x"})
    save_file({"w": rng.standard_normal(100_000).astype(np.float32)},
              str(src / "sub" / "model.safetensors"))
    reg.commit(src, model="m")
    seg = next(s for s in reg.manifest("m@v1").files[-1].segments if s.tensor == "w")
    flip_byte(reg._store, seg.id, reg._io.header(seg.id).blocks[0].offset + 100, 0x10)
    fresh_dest = tmp_path / "new" / "out"
    old = _folder(tmp_path, "old", {"config.json": b"mine", "notes.txt": b"keep"})
    with Registry.open(reg._layout.root) as fresh:
        with pytest.raises(CorruptObject):
            fresh.checkout("m@v1", fresh_dest)
        assert not (tmp_path / "new").exists()  # no folder, no config.json alone
        with pytest.raises(CorruptObject):
            fresh.checkout("m@v1", old, force=True)
    assert _tree(old) == {"config.json": b"mine", "notes.txt": b"keep"}
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "notes.txt"]


def test_the_cli_refuses_to_mix_versions(reg: Registry, tmp_path: Path) -> None:
    reg.commit(_folder(tmp_path, "v1", {"a.bin.raw": b"1"}), model="net")
    reg.commit(_folder(tmp_path, "v2", {"b.bin.raw": b"2"}), model="net")
    out = tmp_path / "out"
    reg.checkout("net@v1", out)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry",
                               str(reg._layout.root), "checkout", *args],
                              capture_output=True, text=True, timeout=120)

    refused = cli("net@v2", str(out))
    assert refused.returncode != 0 and "would mix" in refused.stderr, refused.stderr
    forced = cli("net@v2", str(out), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["others"] == 1
    assert _tree(out) == {"a.bin.raw": b"1", "b.bin.raw": b"2"}  # nothing deleted
    told = cli("net@v1", str(out), "--force")
    assert "also holds 1 other file (not part of the version; left alone)" in told.stdout
