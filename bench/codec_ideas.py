"""Measure entropy-coding ideas on real fine-tune checkpoints (issue 13 item 3).

Takes the 12 largest tensors of three consecutive MiniLM checkpoints (bench/finetune.py,
lr2e-5 ck1..ck3), forms the residual of ck3 against its parent (delta) and against the
extrapolation 2*ck2 - ck1 (extrap, k=1) in the codec's order-preserving integer domain,
splits it into byte planes as the codec does, and reports the compressed size / raw at
several zstd levels, with the order-0 entropy of the planes as a reference, and at
level 1 with the elements grouped by the parent's exponent field first (what the
codec's "gdelta"/"gextrap" blocks do, codec/groups.py). The "ideal" rows bound what any
entropy coder of the same residual can reach: each residual coded as its bit length and
the two bits after its leading one (an adaptive model's cost, the empirical entropy),
the bits below stored raw; alone, given the reference element's exponent, and given
the exponent and the row (the contexts a context-modelling coder would use).

    python bench/codec_ideas.py [--steps 20 --checkpoints 6]
    python bench/codec_ideas.py --root bench/.cache/minilm/<key>  # folders made already
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import zstandard
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune import build


def ordered(x: np.ndarray) -> np.ndarray:
    u = x.view(np.uint32).astype(np.int64)
    return np.where(u & 0x80000000, 0x7FFFFFFF - (u & 0x7FFFFFFF), u)


def entropy(sym: np.ndarray) -> float:
    """Empirical entropy of a symbol stream, in bits (all of it, not per symbol)."""
    _, counts = np.unique(sym, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def ideal_bytes(r: np.ndarray, ctx: np.ndarray | None) -> float:
    """Bytes of the residual under the bit-length model (docstring), given ctx."""
    z = r.astype(np.uint64)
    bits = np.zeros(z.size, np.int64)
    nz = z > 0
    bits[nz] = np.floor(np.log2(z[nz].astype(np.float64))).astype(np.int64) + 1
    below = np.maximum(bits - 3, 0)
    top = np.where(bits > 3, (z >> below.astype(np.uint64)) & 3, z).astype(np.int64)
    sym = bits * 8 + top
    cost = entropy(sym) if ctx is None else entropy(ctx * 4096 + sym) - entropy(ctx)
    return (cost + float(below.sum())) / 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--root", type=Path, help="read <root>/lr2e-5_ck{1,2,3} (no build)")
    a = ap.parse_args()
    if a.root:
        folders = {f"lr2e-5/ck{i}": a.root / f"lr2e-5_ck{i}" for i in (1, 2, 3)}
    else:
        folders = {v.name: Path(v.folder) for v in build(a.steps, a.checkpoints)}
    ck = [load_file(str(folders[f"lr2e-5/ck{i}"] / "model.safetensors")) for i in (1, 2, 3)]
    names = sorted(ck[2], key=lambda k: -ck[2][k].size)[:12]
    totals: dict[tuple[str, str], tuple[float, float]] = {}
    dense: dict[str, float] = {}
    raw = 0
    for k in names:
        p1, p2, x = (ordered(t[k].ravel()) for t in ck)
        raw += x.size * 4
        exponent = (ck[1][k].ravel().view(np.uint32) >> 23) & 0xFF
        by_exponent = np.argsort(exponent, kind="stable")
        for label, pred in (("delta", p2), ("extrap", 2 * p2 - p1)):
            d = x - pred
            r = ((d << 1) ^ (d >> 63)).astype(np.uint32)  # zigzag
            planes = [((r >> (8 * i)) & 0xFF).astype(np.uint8).tobytes() for i in range(4)]
            for level in (1, 3, 9):
                cc = zstandard.ZstdCompressor(level=level)
                t0 = time.perf_counter()
                n = sum(len(cc.compress(p)) for p in planes)
                s, t = totals.get((label, f"zstd {level}"), (0.0, 0.0))
                totals[(label, f"zstd {level}")] = (s + n, t + time.perf_counter() - t0)
            cc = zstandard.ZstdCompressor(level=1)
            n = sum(len(cc.compress(((r[by_exponent] >> (8 * i)) & 0xFF).astype(np.uint8)
                                    .tobytes())) for i in range(4))
            s, t = totals.get((label, "zstd 1 grouped"), (0.0, 0.0))
            totals[(label, "zstd 1 grouped")] = (s + n, t)
            shape = ck[2][k].shape
            if len(shape) == 2 and max(shape) < 8 * min(shape):  # dense matrices only:
                # the word embeddings' unmoved rows are runs, which zstd's matches code
                rows = np.repeat(np.arange(shape[0]) % 64, shape[1]).astype(np.int64)
                ctx = exponent.astype(np.int64)
                zs = sum(len(zstandard.ZstdCompressor(level=1).compress(p)) for p in planes)
                dense[label] = dense.get(label, 0.0) + zs
                for how, c in (("ideal", None), ("ideal | exp", ctx),
                               ("ideal | exp,row", ctx * 64 + rows)):
                    dense[f"{label} {how}"] = dense.get(f"{label} {how}", 0.0) + ideal_bytes(r, c)
                if label == "delta":
                    dense["raw"] = dense.get("raw", 0.0) + x.size * 4
            ent = 0.0
            for p in planes:
                cnt = np.bincount(np.frombuffer(p, np.uint8), minlength=256).astype(float)
                pr = cnt[cnt > 0] / cnt.sum()
                ent += float(-(pr * np.log2(pr)).sum()) * len(p) / 8
            s, t = totals.get((label, "order-0 entropy"), (0.0, 0.0))
            totals[(label, "order-0 entropy")] = (s + ent, t)
    print(f"{len(names)} tensors, {raw / 1e6:.1f} MB raw")
    for (label, how), (size, secs) in sorted(totals.items()):
        speed = f"{raw / 1e6 / secs:7.0f} MB/s" if secs else ""
        print(f"{label:7} {how:16} ratio {size / raw:.4f} {speed}")
    raw_dense = dense.pop("raw", 0.0)
    if raw_dense:
        print(f"dense matrices among them, {raw_dense / 1e6:.1f} MB raw (zstd 1 = the codec's"
              " planes; ideal = the bit-length coder bound):")
        for how, size in sorted(dense.items()):
            print(f"  {how:22} ratio {size / raw_dense:.4f}")


if __name__ == "__main__":
    main()
