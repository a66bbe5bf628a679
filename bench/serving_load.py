"""CPU of a hot swap's steps, outside the gateway: the bench's digits versions (bench/
serving.py) checked out, loaded as ONNX runtimes (optimized graphs kept, as the
gateway does), warmed up, closed and removed, cycling v1-v3; `time.thread_time` per
step, averaged. Pin it to see one core: `taskset -c 1 python bench/serving_load.py`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from modelvc.serving.runtimes import load_runtime
from serving import _models


def main(loads: int = 60) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="modelvc-bench-load-"))
    try:
        reg = _models(tmp / "repo")[0]
        cpu = dict.fromkeys(("checkout", "runtime", "warm-up", "close", "rmtree"), 0.0)
        for i in range(loads):
            v = reg.resolve(f"digits@v{i % 3 + 1}")
            folder = tmp / f"c{i}"
            c = time.thread_time()
            reg.checkout(f"digits@v{v.number}", folder)
            cpu["checkout"] += time.thread_time() - c
            c = time.thread_time()
            rt = load_runtime(folder, label=f"digits@v{v.number}", trust="never",
                              signed=False, threads=1, optimized=tmp / "opt" / f"{v.id}.onnx")
            cpu["runtime"] += time.thread_time() - c
            c = time.thread_time()
            for sample in rt.sample_inputs():
                rt.predict(sample, [])
            cpu["warm-up"] += time.thread_time() - c
            c = time.thread_time()
            rt.close()
            del rt
            cpu["close"] += time.thread_time() - c
            c = time.thread_time()
            shutil.rmtree(folder)
            cpu["rmtree"] += time.thread_time() - c
        reg.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{loads} loads; ms of CPU per load: " + ", ".join(
        f"{k} {v / loads * 1e3:.3f}" for k, v in cpu.items())
        + f"; total {sum(cpu.values()) / loads * 1e3:.2f}")


if __name__ == "__main__":
    main()
