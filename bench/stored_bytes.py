"""Where a registry's stored bytes are: per tensor kind, block mode, dtype and byte plane.

Reads every object of a registry (bench/storage.py --work DIR keeps its registries
under DIR/registry-d3, DIR/<family>/registry-d3) and splits each tensor object's bytes
by the tensor's shape class, block mode, dtype and byte plane (stored raw or zstd):
the figures that say which idea can buy bytes before any is tried (issue 13 item 3).

    python bench/storage.py --no-baselines --keep --work /tmp/w   # then
    python bench/stored_bytes.py /tmp/w/registry-d3
"""

from __future__ import annotations

import argparse
import struct
from collections import defaultdict
from pathlib import Path

from modelvc import Registry
from modelvc.codec.header import read_header_bytes

MB = 1e6


def kind_of(shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return "1-D"
    rows, cols = shape[0], shape[-1]
    if rows >= 8 * cols or cols >= 8 * rows:
        return "embedding-like (tall)" if rows > cols else "wide"
    return "matrix"


def planes_of(mode: str, payload: memoryview) -> list[tuple[int, bool]]:
    """(stored bytes, stored raw) per plane of a block payload (codec.planes layout)."""
    if mode == "same" or not len(payload):
        return []
    view = payload
    if mode in ("extrap", "gextrap"):
        view = view[1:]
    if mode in ("gdelta", "gextrap"):
        (m,) = struct.unpack_from("<H", view, 0)
        view = view[2 + 5 * m :]
    w, mask = view[0], view[1]
    lengths = struct.unpack_from(f"<{w}I", view, 2)
    return [(length, bool(mask >> k & 1)) for k, length in enumerate(lengths)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("registry", type=Path)
    a = ap.parse_args()
    # open_local: a Registry (the RegistryAPI protocol has no object store); no public
    # verb lists every stored object, hence the private _store.
    reg = Registry.open_local(a.registry)
    store = reg._store  # a bench reads the objects as stored, not through the API
    by: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    planes: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    total = 0
    for info in store.list():
        data = store.get(info.key)
        total += len(data)
        if data[:4] != b"MVT1":
            by[("blob", "-", "-")][0] += len(data)
            continue
        h = read_header_bytes(data)
        view = memoryview(data)
        kind = kind_of(h.shape)
        w = h.raw_size // max(1, h.n_elements)
        for b in h.blocks:
            key = (kind, h.dtype, b.mode)
            by[key][0] += b.length
            by[key][1] += b.elements * w
            payload = view[b.offset : b.offset + b.length]
            for k, (length, raw) in enumerate(planes_of(b.mode, payload)):
                p = planes[(h.dtype, b.mode, f"plane{k}")]
                p[0] += length
                p[1] += b.elements
                p[2] += length if raw else 0
    print(f"{total / MB:.3f} MB stored in all")
    print(f"{'kind':24} {'dtype':5} {'mode':8} {'stored MB':>10} {'raw MB':>9} {'ratio':>6}"
          f" {'share':>6}")
    for row, (s, r) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        ratio = f"{s / r:.3f}" if r else "-"
        print(f"{row[0]:24} {row[1]:5} {row[2]:8} {s / MB:10.3f} {r / MB:9.1f} {ratio:>6} "
              f"{s / total:6.1%}")
    print(f"\n{'dtype':5} {'mode':8} {'plane':7} {'stored MB':>10} {'bits/elem':>9}"
          f" {'stored raw':>10}")
    for row, (s, n, raw_bytes) in sorted(planes.items(), key=lambda kv: -kv[1][0]):
        print(f"{row[0]:5} {row[1]:8} {row[2]:7} {s / MB:10.3f} {8 * s / n:9.3f}"
              f" {raw_bytes / s if s else 0:10.0%}")
    reg.close()


if __name__ == "__main__":
    main()
