"""Content-defined chunking (FastCDC-style gear hash, vectorized with numpy).

Why these sizes: min 256 KiB, average ~1 MiB, max 4 MiB. Opaque model files (pickled
checkpoints) run to gigabytes; 1 MiB chunks keep the object count per GiB near a
thousand (cheap manifests, cheap object-store round trips) while a local edit (an
inserted or changed tensor) still costs only a few MiB of new chunks.

Hash: gear hash on 32-bit words, h_i = sum_{k<32} GEAR[b_{i-k}] << k (mod 2^32), so the
hash at i depends only on the 32 bytes ending at i. Instead of a per-byte loop it is
computed for a whole block with log2(32) = 5 shift-and-add passes ("doubling":
H_2w(i) = H_w(i) + H_w(i-w) << w). A cut candidate is a position whose top bits are all
zero, tested as one comparison `h < 2**(32-bits)`. Normalized chunking (FastCDC): a
stricter mask (more bits) before the average size and a looser one after it, which
narrows the chunk-size spread. Blocks of 1 MiB keep the working set in cache.
"""

from __future__ import annotations

import io
import mmap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    U32 = npt.NDArray[np.uint32]

MIN_SIZE = 256 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 4 * 1024 * 1024
WINDOW = 32
STRICT_BITS = 22  # before AVG_SIZE: cut probability 2^-22 per byte
LOOSE_BITS = 18  # after AVG_SIZE: 2^-18 per byte
BLOCK = 1024 * 1024


def _splitmix64_table(seed: int) -> list[int]:
    # Spelled out rather than drawn from numpy.random, whose streams may change between
    # numpy releases: boundaries must never change, or new commits stop deduplicating.
    out, x, m = [], seed, (1 << 64) - 1
    for _ in range(256):
        x = (x + 0x9E3779B97F4A7C15) & m
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append((z ^ (z >> 31)) >> 32)
    return out


@cache
def gear() -> U32:
    """The gear table (built on first use: numpy is imported only by a commit that
    chunks a file, not by every command that loads the formats)."""
    import numpy as np

    return np.array(_splitmix64_table(0x6D6F64656C7663), dtype=np.uint32)


Buffer = bytes | bytearray | memoryview


def _block_hash(block: npt.NDArray[np.uint8], h: U32, tmp: U32) -> U32:
    import numpy as np

    n = block.shape[0]
    hv, tv = h[:n], tmp[:n]
    np.take(gear(), block, out=hv)
    w = 1
    while w < WINDOW:
        np.left_shift(hv[:-w], w, out=tv[w:])
        hv[w:] += tv[w:]
        w *= 2
    return hv


def _iter_blocks(src: Path | Buffer) -> Iterator[memoryview]:
    """Yield consecutive pieces of the input, each at most BLOCK bytes."""
    if isinstance(src, Path):
        with open(src, "rb") as f:
            yield from _read_blocks(f)
        return
    view = memoryview(src).cast("B")
    for start in range(0, len(view), BLOCK):
        yield view[start : start + BLOCK]


def _read_blocks(f: io.BufferedReader) -> Iterator[memoryview]:
    buf = bytearray(BLOCK)
    while True:
        n = f.readinto(buf)
        if not n:
            return
        yield memoryview(buf)[:n]


def _candidates(src: Path | Buffer) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], int]:
    """Cut candidates (cut after byte i, stored as i+1), whether each passes the strict
    mask, and the total size."""
    import numpy as np

    strict_limit = np.uint32(1 << (32 - STRICT_BITS))
    loose_limit = np.uint32(1 << (32 - LOOSE_BITS))
    h = np.empty(BLOCK + WINDOW, dtype=np.uint32)
    tmp = np.empty_like(h)
    carry = np.zeros(0, dtype=np.uint8)  # last WINDOW-1 bytes of the previous block
    cuts: list[npt.NDArray[np.int64]] = []
    strict: list[npt.NDArray[np.bool_]] = []
    pos = 0  # file offset of the current block's first (non-carry) byte
    for piece in _iter_blocks(src):
        block = np.concatenate((carry, np.frombuffer(piece, dtype=np.uint8)))
        hv = _block_hash(block, h, tmp)[len(carry) :]
        idx = np.flatnonzero(hv < loose_limit)
        cuts.append(idx.astype(np.int64) + (pos + 1))
        strict.append(hv[idx] < strict_limit)
        pos += len(piece)
        carry = block[-(WINDOW - 1) :].copy()
    if not cuts:
        return np.zeros(0, np.int64), np.zeros(0, np.bool_), 0
    return np.concatenate(cuts), np.concatenate(strict), pos


def _select(cands: npt.NDArray[np.int64], strict: npt.NDArray[np.bool_], size: int) -> list[int]:
    strict_cands = cands[strict]
    ends: list[int] = []
    start = 0
    while size - start > MIN_SIZE:
        lo, mid, hi = start + MIN_SIZE, start + AVG_SIZE, start + MAX_SIZE
        cut = _first_in(strict_cands, lo, min(mid, size))
        if cut is None:
            cut = _first_in(cands, mid, min(hi, size))
        if cut is None:
            cut = min(hi, size)
        ends.append(cut)
        start = cut
    if start < size:
        ends.append(size)
    return ends


def _first_in(arr: npt.NDArray[np.int64], lo: int, hi: int) -> int | None:
    """Smallest element of sorted arr in [lo, hi), if any."""
    import numpy as np

    i = int(np.searchsorted(arr, lo))
    if i < len(arr) and arr[i] < hi:
        return int(arr[i])
    return None


def cdc_boundaries(src: Path | str | Buffer) -> list[int]:
    """Chunk END offsets of `src` (a path or an in-memory buffer): strictly increasing,
    the last equals the size; [] for empty input. Chunk k is [ends[k-1], ends[k])."""
    if isinstance(src, str):
        src = Path(src)
    cands, strict, size = _candidates(src)
    return _select(cands, strict, size)


def cdc_boundaries_mapped(path: Path, start: int, end: int) -> list[int]:
    """CDC end offsets (absolute) of the byte range [start, end) of a file."""
    if end <= start:
        return []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            return [start + e for e in cdc_boundaries(view[start:end])]
        finally:
            view.release()
