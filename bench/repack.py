"""What gc's repack reclaims (bytes, not speed): a registry of small tensors whose
versions share packs, most versions deleted, then gc with the sweep only (repack
threshold 0: packs are freed only when every member is dead, as before repacking) and
gc with the default repack.

    python bench/repack.py [--versions 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from modelvc.objects.packed import PackedStore
from modelvc.registry import Registry


def stored(store: PackedStore) -> int:
    return sum(e.size for e in store.backend.list(""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("MODELVC_AUTHOR", "bench")
    rng = np.random.default_rng(0)
    weights = {f"t{i}": rng.standard_normal((128, 128)).astype(np.float32) for i in range(100)}
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry.init(Path(tmp) / "reg")
        store = reg._store
        assert isinstance(store, PackedStore)
        model = Path(tmp) / "m.safetensors"
        for n in range(args.versions):  # 30 of 100 64 KiB tensors change per version
            for i in (rng.choice(100, 30, replace=False) if n else range(100)):
                weights[f"t{i}"] = rng.standard_normal((128, 128)).astype(np.float32)
            save_file(weights, str(model))
            reg.commit(model, model="m", message=str(n))
        out["stored_before_deletes"] = stored(store)
        for n in range(2, args.versions - 1):  # keep the first two and the last
            reg.delete(f"m@v{n}")
        repack = store.repack
        store.repack = lambda **kw: repack(**{**kw, "threshold": 0.0})  # type: ignore[method-assign]
        reg.gc(dry_run=False, grace_seconds=0)
        out["stored_after_sweep_only"] = stored(store)
        del store.repack
        cpu = time.process_time()
        report = reg.gc(dry_run=False, grace_seconds=0)
        out["repack_cpu_s"] = round(time.process_time() - cpu, 3)
        out["stored_after_repack"] = stored(store)
        out["packs_rewritten"], out["packs_written"] = report.packs_rewritten, report.packs_written
        out["live_object_bytes"] = sum(i.size for i in store.list())
        out["verify_ok"] = reg.verify().ok
        reg.close()
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:24} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k:24} {v}")


if __name__ == "__main__":
    main()
