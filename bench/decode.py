"""Checkout CPU per MB, version by version: the decode path's cost on a loaded machine.

bench/storage.py times checkouts by the wall clock, which on a shared machine measures
the load. This one commits the same MiniLM sequence (bench/finetune.py) once into a
registry, then checks chosen versions out from a freshly opened registry (nothing
cached) and records the process's CPU seconds (user + system, every thread) per MB of
raw data. Run it from two trees in turns to compare codecs side by side:

    python bench/decode.py --registry /tmp/reg-a --build      # once per tree (its writer)
    python bench/decode.py --registry /tmp/reg-a --rounds 5   # CPU ms per MB, per version
    python bench/decode.py --registry /tmp/reg-g --build --groups   # grouped blocks

Versions: every chain end and export by default (the slowest checkouts); --all for the
whole sequence. The minimum over rounds is the figure; the median is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune import VersionSpec, build
from storage import warm

from modelvc import Registry
from modelvc.codec import kernels

MB = 1e6
MODEL = "minilm"
# MAX_CHAIN_DEPTH 3: ck3 and later sit on three delta links over the base's full copy.
CHAIN_ENDS = tuple(f"{lr}/ck{c}" for lr in ("lr2e-5", "lr1e-4") for c in (3, 6))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sequence(cache: Path | None) -> list[VersionSpec]:
    """The versions to commit: bench/finetune.py's whole sequence, or with --cache the
    part of a sequence that exists under that folder (its generation may still be
    running; folders appear whole), plus a bf16 export of the last fine-tune, made here."""
    if cache is None:
        return build(log=False)
    out = [VersionSpec("base", "base", "main", None, str(cache / "base"), "base")]
    for tag in ("lr2e-5", "lr1e-4"):
        parent = "base"
        for c in range(1, 100):
            folder = cache / f"{tag}_ck{c}"
            if not (folder / "model.safetensors").exists():
                break
            out.append(VersionSpec(f"{tag}/ck{c}", "full", tag, parent, str(folder), f"ck{c}"))
            parent = f"{tag}/ck{c}"
    last = out[-1]
    export = cache.parent / f"{cache.name}-bf16" / last.name.replace("/", "_")
    if not export.exists():
        from finetune import _bf16

        _bf16(Path(last.folder), export)
    out.append(VersionSpec(f"bf16/{last.name}", "bf16", "bf16", last.name, str(export),
                           "bf16 export"))
    return out


def commit_all(root: Path, versions: list[VersionSpec]) -> dict[str, int]:
    """The sequence committed in order, as bench/storage.py does; name -> version."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    numbers: dict[str, int] = {}
    branch_of = {v.name: v.branch for v in versions}
    with Registry.init(root) as reg:
        for v in versions:
            warm(Path(v.folder))
            parent = None  # on its branch's head (commit's default)
            if v.parent is not None and v.branch != branch_of[v.parent]:
                parent = f"{MODEL}@v{numbers[v.parent]}"
            row = reg.commit(Path(v.folder), model=MODEL, branch=v.branch,
                             message=v.message, parent=parent)
            numbers[v.name] = row.number
    (root / "bench-versions.json").write_text(json.dumps(
        {v.name: [numbers[v.name], v.folder] for v in versions}))
    return numbers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", type=Path, required=True)
    ap.add_argument("--build", action="store_true", help="commit the sequence first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="every version, not chain ends")
    ap.add_argument("--cache", type=Path,
                    help="a bench/.cache/minilm/<key> folder, perhaps partial (see sequence)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--groups", action="store_true",
                    help="--build writes grouped format 2 blocks (codec.groups.WRITE_GROUPED)")
    a = ap.parse_args()
    if a.groups:
        from modelvc.codec import groups

        groups.WRITE_GROUPED = True
    if a.build:
        commit_all(a.registry, sequence(a.cache))
    index = json.loads((a.registry / "bench-versions.json").read_text())
    numbers = {name: number for name, (number, _) in index.items()}
    names = list(numbers) if a.all else [
        n for n in numbers if n in CHAIN_ENDS or n.startswith("bf16/")]
    raw = {name: sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
           for name, (_, folder) in index.items()}
    codec = "C kernels" if kernels.NATIVE else "numpy fallback"
    print(f"codec={codec}  registry={a.registry}  rounds={a.rounds}")
    print(f"{'version':<28} {'raw MB':>7} {'CPU ms/MB min':>13} {'median':>7} "
          f"{'wall MB/s max':>13}")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for _ in range(a.rounds):  # rounds outermost: a burst of load hits every version
            for name in names:
                dest = Path(tmp) / "out"
                shutil.rmtree(dest, ignore_errors=True)
                with Registry.open(a.registry) as reg:
                    c0, t0 = cpu(), time.perf_counter()
                    reg.checkout(f"{MODEL}@v{numbers[name]}", dest)
                    samples[name].append((cpu() - c0, time.perf_counter() - t0))
        for name in names:
            mb = raw[name] / MB
            per = [c / mb * 1e3 for c, _ in samples[name]]
            best_wall = min(w for _, w in samples[name])
            out[name] = {"raw_mb": mb, "cpu_ms_per_mb": per, "best_wall_s": best_wall}
            print(f"{name:<28} {mb:7.1f} {min(per):13.2f} {statistics.median(per):7.2f} "
                  f"{mb / best_wall:13.0f}")
    total = sum(raw[n] for n in names) / MB
    cpu_min = sum(min(c for c, _ in samples[n]) for n in names)
    print(f"{'all of the above':<28} {total:7.1f} {cpu_min / total * 1e3:13.2f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
