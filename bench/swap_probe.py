"""What a hot swap costs the gateway's event loop, step by step (docs/benchmarks.md,
session 16): the gateway on CPU 0 with its loading threads on CPU 1, a REST load of 4
callers on CPU 1, 20 swaps cycling v2, v3, v1 (as bench/serving.py's), and inside the
gateway:

- the wall time of the swap's steps that run on the loop (`Pool._load_inline`, the
  re-load's switch; `Pool._free_inline`, the old version's free);
- asyncio's own log of callbacks that held the loop over 0.6 ms (debug mode, which
  makes every callback a little slower), by task, during the swaps and in a quiet 2 s.

    python bench/swap_probe.py
    python bench/swap_probe.py --fresh     # 20 swaps each to a version never loaded
    python bench/swap_probe.py --ort-gil   # does ONNX Runtime hold the GIL building a session?
    python bench/swap_probe.py --destroy   # a session's destruction, warm and cold
    python bench/swap_probe.py --time modelvc.serving.runtimes.onnx:OnnxRuntime.close
                                           # any other function's wall time, as those two
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SLOW_S = 0.0006


TIMED = ["modelvc.serving.swap:Pool._load_inline", "modelvc.serving.swap:Pool._free_inline"]


def gateway(out: str, argv: list[str], timed_names: list[str]) -> None:
    """`modelvc ARGV` with the probes in (TIMED_NAMES: "module:Class.function" or
    "module:function"), their records written to OUT every second."""
    from modelvc.cli import main as cli
    from modelvc.serving import gateway as gw

    rec: dict[str, list[Any]] = {"slow": []}

    def timed(name: str, fn: Any) -> Any:
        def wrap(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                rec[name].append((time.time(), (time.perf_counter() - t) * 1e3))
        return wrap

    for name in timed_names:
        module, _, qual = name.partition(":")
        *path, attr = qual.split(".")
        owner: Any = importlib.import_module(module)
        for part in path:
            owner = getattr(owner, part)
        rec[name] = []
        setattr(owner, attr, timed(name, getattr(owner, attr)))

    class Slow(logging.Handler):
        def emit(self, r: logging.LogRecord) -> None:
            msg = r.getMessage()
            if " took " in msg:  # "Executing <Task ... coro=<F() running at PATH:N> ..."
                what = re.search(r"coro=<(\S+)(?: running at (\S+?)>| done)", msg)
                rec["slow"].append((time.time(), f"{what[1]} at {Path(what[2]).name}"
                                    if what and what[2] else
                                    what[1] if what else msg.split(" took ")[0][:80]))

    start = gw.Gateway.start
    rec_task: list[asyncio.Task[None]] = []

    async def probed(self: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_S
        log = logging.getLogger("asyncio")
        log.addHandler(Slow())
        log.propagate = False

        async def dump() -> None:
            while True:
                await asyncio.sleep(1.0)
                Path(out).write_text(json.dumps(rec))
        rec_task.append(loop.create_task(dump()))  # held: a task only the loop refers to
        await start(self)

    gw.Gateway.start = probed  # type: ignore[method-assign]
    cli.main(argv)


def destroy(rounds: int = 40) -> None:
    """How long dropping a digits ONNX session takes (what Pool._free_inline did on the
    loop): right after three runs, and once 8 MB written elsewhere has cooled the
    caches; with the session options that might change it. Medians of `rounds`."""
    import onnxruntime as ort

    import serving as b
    from modelvc.serving.runtimes.onnx import OnnxRuntime

    tmp = Path(tempfile.mkdtemp(prefix="modelvc-swap-probe-"))
    try:
        _, x, onnx = b._models(tmp / "repo", 0)
        model, graph = tmp / "model.onnx", tmp / "optimized.onnx"
        model.write_bytes(onnx)
        OnnxRuntime(model, optimized=graph)  # writes the optimized graph
        optimized = graph.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ort.set_default_logger_severity(3)
    junk = bytearray(8 << 20)
    options: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("as the gateway builds it", {}, {}),
        ("memory arena off", {"enable_cpu_mem_arena": False}, {}),
        ("arena and memory pattern off",
         {"enable_cpu_mem_arena": False, "enable_mem_pattern": False}, {}),
        ("prepacking off", {}, {"session.disable_prepacking": "1"}),
    ]
    for what, attrs, entries in options:
        times: dict[str, list[float]] = {"warm": [], "cold": []}
        for i in range(rounds):
            opts = OnnxRuntime._options(1)
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            for k, v in attrs.items():
                setattr(opts, k, v)
            for k, v in entries.items():
                opts.add_session_config_entry(k, v)
            sess = ort.InferenceSession(optimized, opts,
                                        providers=["CPUExecutionProvider"])
            for _ in range(3):
                sess.run(None, {"X": x[:1]})
            kind = "cold" if i % 2 else "warm"
            if kind == "cold":
                junk[:] = bytes([i % 256]) * len(junk)
            t = time.perf_counter()
            del sess
            times[kind].append((time.perf_counter() - t) * 1e3)
        print(f"{what}: destroyed warm {statistics.median(times['warm']):.3f} ms, "
              f"cold {statistics.median(times['cold']):.3f} ms (medians of "
              f"{rounds // 2} each)")


def ort_gil() -> None:
    """A thread on CPU 1 builds 50 sessions from an optimized digits graph while this
    thread spins on CPU 0: gaps in the spin over 0.2 ms are the GIL held."""
    import onnxruntime as ort

    import serving as b
    from modelvc.serving.runtimes.onnx import OnnxRuntime

    tmp = Path(tempfile.mkdtemp(prefix="modelvc-swap-probe-"))
    _, _, onnx = b._models(tmp / "repo", 0)
    model, graph = tmp / "model.onnx", tmp / "optimized.onnx"
    model.write_bytes(onnx)
    OnnxRuntime(model, optimized=graph)  # writes the optimized graph
    ort.set_default_logger_severity(3)

    def build() -> None:
        os.sched_setaffinity(0, {1})
        for _ in range(50):
            OnnxRuntime.session_from_optimized(graph, 1)

    os.sched_setaffinity(0, {0})
    for interval in (0.001, 0.0002):
        sys.setswitchinterval(interval)
        th = threading.Thread(target=build)
        gaps, last = [], time.perf_counter()
        t0 = last
        th.start()
        while th.is_alive():
            now = time.perf_counter()
            if now - last > 0.0002:
                gaps.append(now - last)
            last = now
        print(f"switch interval {interval * 1e3:.1f} ms: 50 sessions in "
              f"{time.perf_counter() - t0:.3f} s; spin gaps over 0.2 ms: {len(gaps)}, "
              f"total {sum(gaps) * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ort-gil", action="store_true")
    ap.add_argument("--destroy", action="store_true",
                    help="time an ONNX session's destruction, warm and with cold caches")
    ap.add_argument("--checkout-helper", action=argparse.BooleanOptionalAction,
                    help="the gateway's --[no-]checkout-helper (default: the gateway's, "
                         "on with the --load-cpus given here)")
    ap.add_argument("--fresh", action="store_true",
                    help="swap to 20 versions never loaded, once each (first loads)")
    ap.add_argument("--time", action="append", default=[], metavar="MODULE:NAME",
                    help="also time this function (module:Class.method or module:function)")
    ap.add_argument("--gateway", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gateway is not None:
        return gateway(args.out, args.gateway, TIMED + args.time)
    if args.ort_gil:
        return ort_gil()
    if args.destroy:
        return destroy()
    import serving as b
    from modelvc.serving.runner import free_port

    tmp = Path(tempfile.mkdtemp(prefix="modelvc-swap-probe-"))
    reg, x, _ = b._models(tmp / "repo", 20 if args.fresh else 0)
    import numpy as np

    np.save(tmp / "x.npy", x)
    port, out = free_port(), tmp / "probe.json"
    url = f"http://127.0.0.1:{port}"
    gw = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--out", str(out),
         *(f"--time={name}" for name in args.time), "--gateway",
         "--registry", str(tmp / "repo"), "serve", "digits@production", "--port", str(port),
         "--grpc-port", "0", "--log-level", "warning", "--poll-interval", "0.05",
         "--workers", "4", "--load-cpus", "1",
         *([] if args.checkout_helper is None else
           ["--checkout-helper" if args.checkout_helper else "--no-checkout-helper"])],
        env=os.environ | {"TMPDIR": str(tmp)})
    try:
        b._wait_ready(url, gw, "modelvc serve")
        load = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m",
                                 "modelvc.serving.loadgen", url, "--inputs",
                                 str(tmp / "x.npy"), "--threads", "4", "--seconds", "10"],
                                stdout=subprocess.DEVNULL)
        time.sleep(3)
        quiet = (time.time(), time.time() + 2.0)
        time.sleep(2.0)
        events = []
        for i in range(20):
            target = 4 + i if args.fresh else [2, 3, 1][i % 3]
            reg.promote(f"digits@v{target}", "production", reason="probe", create=True)
            promoted = time.time()
            while b._serving(url, "metadata") != target:
                time.sleep(0.01)
            events.append((promoted, time.time()))
        load.wait()
        time.sleep(1.5)  # the probe's last write
    finally:
        gw.terminate()
        gw.wait(30)
        reg.close()
    rec = json.loads(out.read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    for name in TIMED + args.time:
        ms = [v for _, v in rec[name]]
        if ms:
            print(f"{name.partition(':')[2]}: {len(ms)} calls, median "
                  f"{statistics.median(ms):.3f} ms, max {max(ms):.3f} ms")

    def during(t: float) -> bool:
        return any(a <= t <= b_ + 0.03 for a, b_ in events)

    swaps = collections.Counter(m for t, m in rec["slow"] if during(t))
    calm = [m for t, m in rec["slow"] if quiet[0] <= t <= quiet[1]]
    print(f"callbacks over {SLOW_S * 1e3:.1f} ms: {sum(swaps.values())} during the 20 swaps, "
          f"{len(calm)} in a quiet 2 s; during the swaps, by callback:")
    for msg, n in swaps.most_common(6):
        print(f"  {n:3d}  {msg}")


if __name__ == "__main__":
    main()
