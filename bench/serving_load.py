"""CPU of a hot swap's steps, outside the gateway: the bench's digits versions (bench/
serving.py) checked out, loaded as ONNX runtimes (optimized graphs kept, as the
gateway does), warmed up, closed and removed, cycling v1-v3; `time.thread_time` per
step, averaged. Pin it to see one core: `taskset -c 1 python bench/serving_load.py`.
`--pool`: instead, the gateway's own `Pool` (serving/swap.py) loading and freeing on
CPU 1, alone and beside a Python thread spinning on CPU 0 (an event loop that never
idles): what GIL hand-offs add to a load's CPU and wall time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from modelvc.serving.metrics import Metrics
from modelvc.serving.runtimes import load_runtime
from modelvc.serving.swap import Pool
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


def pool(loads: int = 40, rounds: int = 2) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="modelvc-bench-load-"))
    reg = _models(tmp / "repo")[0]
    vs = [reg.resolve(f"digits@v{n}") for n in (1, 2, 3)]
    p = Pool(reg, tmp / "work", Metrics(), load_cpus=frozenset({1}))

    def run(n: int) -> tuple[float, float]:
        def cycle() -> tuple[float, float]:
            c, w = time.thread_time(), time.perf_counter()
            for i in range(n):
                p._free(p._load(vs[i % 3], threading.Event()))
            return (time.thread_time() - c) / n * 1e3, (time.perf_counter() - w) / n * 1e3
        return p._io.submit(cycle).result()

    stop = threading.Event()

    def spin() -> None:
        os.sched_setaffinity(0, {0})
        while not stop.is_set():
            sum(range(1000))

    try:
        run(6)  # first loads: graph optimization, caches
        for _ in range(rounds):
            alone = run(loads)
            stop.clear()
            t = threading.Thread(target=spin)
            t.start()
            beside = run(loads)
            stop.set()
            t.join()
            print(f"load+free on CPU 1, ms CPU / wall: alone {alone[0]:.2f} / {alone[1]:.1f}, "
                  f"beside a spinning Python thread {beside[0]:.2f} / {beside[1]:.1f}")
    finally:
        p.close()
        reg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    pool() if "--pool" in sys.argv else main()
