"""Serving benchmark: the gateway (`modelvc serve`, its own process) under a load
generator (`python -m modelvc.serving.loadgen`, another process) at fixed concurrency,
over OIP REST (JSON) and OIP gRPC (raw tensors) in the same run, against the same ONNX
model called in-process; then, per protocol, the same load during 20 hot swaps
(promotions the gateway follows): failed requests, p99 during swaps vs steady, peak RSS
of the gateway during swaps vs steady.

    python bench/serving.py                # figures and PASS/MISS per target
    python bench/serving.py --json out.json
    python bench/serving.py --wait-on status   # swaps wait by polling /modelvc/status
    python bench/serving.py --smoke        # seconds, not minutes: checks the bench runs

Each swap waits until the gateway serves the promoted version, polling every 10 ms
(100 Hz) either the OIP metadata route (default) or `/modelvc/status` (the full
statistics an operator's dashboard reads; per-slot counts, so O(1) in the request
rate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modelvc import Registry
from modelvc.serving.runner import free_port

THREADS = 4  # the gateway's inference threads
CALLERS = (1, 8)  # concurrent callers measured per protocol, beside THREADS
STEADY_S = 6.0
WARMUP_S = 12.0
SWAP_LOAD_S = 8.0
PROTOCOLS = ("rest", "grpc")


def _models(root: Path) -> tuple[Registry, np.ndarray, bytes]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    reg = Registry.init(root)
    first = b""
    for n, hidden in enumerate([(32,), (64,), (48,)], 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = MLPClassifier(hidden, max_iter=40, random_state=n).fit(x, y)
        onnx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}).SerializeToString()
        first = first or onnx
        folder = root / f"ck{n}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(onnx)
        reg.commit(folder, model="digits", branch="dev", message=f"mlp {hidden}")
    reg.promote("digits@v1", "production", reason="bench")
    return reg, x, first


def _pct(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def in_process(onnx: bytes, x: np.ndarray, threads: int, seconds: float) -> dict[str, Any]:
    """The same session settings as the gateway's ONNX runtime, one row per call."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    lats: list[list[float]] = [[] for _ in range(threads)]
    end = time.perf_counter() + seconds

    def run(i: int) -> None:
        rng = np.random.default_rng(i)
        while time.perf_counter() < end:
            k = int(rng.integers(0, len(x)))
            t0 = time.perf_counter()
            sess.run(None, {"X": x[k:k + 1]})
            lats[i].append(time.perf_counter() - t0)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    flat = [v for lst in lats for v in lst]
    return {"requests": len(flat), "rps": len(flat) / seconds, **_pct(flat)}


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, [0.0]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append(float(line.split()[1]) * 1024)
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def load(url: str, inputs: Path, threads: int, seconds: float,
         during: Any = None, window: list[float] | None = None) -> dict[str, Any]:
    p = subprocess.Popen([sys.executable, "-m", "modelvc.serving.loadgen", url,
                          "--inputs", str(inputs), "--threads", str(threads),
                          "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.readline()  # "started"
    if during is not None:
        during()
    out, _ = p.communicate(timeout=seconds + 120)
    doc = json.loads(out)
    lat, starts = doc.pop("latencies"), doc.pop("starts")
    res = {**doc, "requests": len(lat), "rps": len(lat) / seconds, **_pct(lat)}
    if window:  # only requests that started while the swaps ran
        inside = [v for v, t in zip(lat, starts, strict=True) if window[0] <= t <= window[1]]
        res |= {"window_requests": len(inside), **_pct(inside)}
    return res


def _serving(url: str, wait_on: str) -> int:
    """The version production serves: from the OIP metadata route, or from the stable
    slot of /modelvc/status."""
    if wait_on == "status":
        with urllib.request.urlopen(f"{url}/modelvc/status") as r:
            return int(json.loads(r.read())["digits"]["stable"]["version"])
    with urllib.request.urlopen(f"{url}/v2/models/digits/versions/production") as r:
        return int(json.loads(r.read())["parameters"]["version"])


def swaps(reg: Registry, url: str, window: list[float], n: int = 20,
          wait_on: str = "metadata") -> int:
    """N promotions, each waited for at 100 Hz; returns how many polls that took."""
    polls = 0
    window.append(time.time())
    for i in range(n):
        target = [2, 3, 1][i % 3]  # each swap loads: only one previous version stays warm
        reg.promote(f"digits@v{target}", "production", reason="bench swap")
        while True:
            polls += 1
            if _serving(url, wait_on) == target:
                break
            time.sleep(0.01)
    window.append(time.time())
    return polls


def main() -> None:
    global STEADY_S, WARMUP_S, SWAP_LOAD_S
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--wait-on", choices=["metadata", "status"], default="metadata",
                    help="what each swap polls at 100 Hz until the gateway serves the "
                         "new version: the OIP metadata route or /modelvc/status")
    ap.add_argument("--smoke", action="store_true",
                    help="short phases: checks the benchmark runs; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        STEADY_S, WARMUP_S, SWAP_LOAD_S = 1.0, 1.0, 3.0
    tmp = Path(tempfile.mkdtemp(prefix="modelvc-bench-serving-"))
    reg, x, onnx = _models(tmp / "repo")
    np.save(tmp / "x.npy", x)
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    urls = {"rest": url, "grpc": f"grpc://127.0.0.1:{grpc_port}"}
    gw = subprocess.Popen([sys.executable, "-m", "modelvc.cli.main", "--registry",
                           str(tmp / "repo"), "serve", "digits@production", "--port", str(port),
                           "--grpc-port", str(grpc_port),
                           "--poll-interval", "0.05", "--log-level", "warning",
                           "--workers", str(THREADS)], env=os.environ | {"TMPDIR": str(tmp)})
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready")
                break
            except OSError:
                time.sleep(0.1)
        # Warm up until the bounded per-request bookkeeping (feedback ids, windows) is
        # full, so "steady" means a long-running gateway's steady state.
        load(url, tmp / "x.npy", THREADS, WARMUP_S)
        load(urls["grpc"], tmp / "x.npy", THREADS, min(WARMUP_S, 4.0))
        res: dict[str, Any] = {"threads": THREADS, "callers": CALLERS, "cpus": os.cpu_count(),
                               "wait_on": args.wait_on, "smoke": args.smoke}
        res["inproc_c1"] = in_process(onnx, x, 1, 3.0)
        res["inproc"] = in_process(onnx, x, THREADS, 3.0)
        for proto in PROTOCOLS:
            for c in CALLERS:
                res[f"{proto}_c{c}"] = load(urls[proto], tmp / "x.npy", c, STEADY_S)
            with RssSampler(gw.pid) as steady_rss:
                res[proto] = load(urls[proto], tmp / "x.npy", THREADS, STEADY_S)
            window: list[float] = []
            polls: list[int] = []
            with RssSampler(gw.pid) as swap_rss:
                res[f"{proto}_swaps"] = load(
                    urls[proto], tmp / "x.npy", THREADS, SWAP_LOAD_S,
                    during=lambda w=window, p=polls: p.append(  # type: ignore[misc]
                        swaps(reg, url, w, wait_on=args.wait_on)),
                    window=window)
            res[f"{proto}_swap_seconds"] = window[1] - window[0]
            res[f"{proto}_swap_polls"] = polls[0]
            res[f"{proto}_rss_steady_mb"] = float(np.median(steady_rss.samples[1:])) / 1e6
            res[f"{proto}_rss_swap_peak_mb"] = max(swap_rss.samples) / 1e6
    finally:
        gw.terminate()
        gw.wait(30)
        reg.close()
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


def report(r: dict[str, Any]) -> None:
    def row(name: str, d: dict[str, Any]) -> None:
        print(f"{name:<36} {d['rps']:>8.0f} req/s  p50 {d['p50_ms']:6.3f} ms  "
              f"p99 {d['p99_ms']:6.3f} ms")

    names = {"rest": "REST, JSON", "grpc": "gRPC, raw"}
    t = r["threads"]
    print(f"digits MLP (ONNX, 1 row per request), {t} inference threads, {r['cpus']} CPUs"
          + ("  [SMOKE RUN: figures mean nothing]" if r.get("smoke") else ""))
    row("in-process, 1 caller", r["inproc_c1"])
    row(f"in-process, {t} callers", r["inproc"])
    for proto in PROTOCOLS:
        for c in sorted({*r["callers"], t}):
            row(f"gateway ({names[proto]}), {c} caller{'s' * (c > 1)}",
                r[proto] if c == t else r[f"{proto}_c{c}"])
        row(f"gateway ({names[proto]}), 20 hot swaps", r[f"{proto}_swaps"])
    route = "/modelvc/status" if r["wait_on"] == "status" else "OIP metadata"
    checks = []
    for proto in PROTOCOLS:
        s = r[f"{proto}_swaps"]
        print(f"{names[proto]}: 20 swaps in {r[f'{proto}_swap_seconds']:.1f} s "
              f"({s['window_requests']} requests started meanwhile; p99 above is theirs), "
              f"answered by versions {s['by_version']}; waited on {route} at 100 Hz "
              f"({r[f'{proto}_swap_polls']} polls)")
        overhead = r[f"{proto}_c1"]["p50_ms"] - r["inproc_c1"]["p50_ms"]
        p99x = s["p99_ms"] / r[proto]["p99_ms"]
        peak, steady = r[f"{proto}_rss_swap_peak_mb"], r[f"{proto}_rss_steady_mb"]
        checks += [
            (f"{proto}: failed requests during swaps", f"{s['failed']}", s["failed"] == 0,
             "0"),
            (f"{proto}: p99 during swaps / steady p99", f"{p99x:.2f}x", p99x <= 2.0,
             "<= 2x"),
            (f"{proto}: gateway overhead at p50 (1 caller)", f"{overhead:.3f} ms",
             overhead <= 1.0, "<= 1 ms"),
            (f"{proto}: peak RSS during swaps / steady",
             f"{peak / steady:.2f}x ({peak:.0f} / {steady:.0f} MB)", peak / steady <= 1.5,
             "<= 1.5x"),
        ]
    for name, value, ok, target in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name:<44} {value:<24} target {target}")


if __name__ == "__main__":
    main()
