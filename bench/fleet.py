"""Fleet rollout benchmark: naive (each gateway follows the channel on its own), atomic
and rolling (modelvc deploy), in the same run, under load from a separate process.

    python bench/fleet.py [--gateways 4] [--batch 1] [--json out.json]

For each strategy: N gateway processes serve digits@production (metadata on PostgreSQL),
a load process sends requests round-robin to all of them and records each response's
version, then v1 -> v2 (forward) and back (rollback). Reported per move: the mixed-version
window (first response of the new version to the last of the old, across the fleet),
failed requests, and the time from the move to the whole fleet serving the new version.
A gateway of a rolling batch is unready (503) while it reloads: the load client then
sends the request to the next gateway at once, as a readiness-aware load balancer that
retries another upstream would, and counts the 503s (a request failing on every gateway
counts as failed). Naive and atomic gateways never answer 503.
Targets: atomic window <= 50 ms, 0 failed requests, fleet-wide rollback <= 1 s. Rolling
has no window target: versions are mixed by design until its last batch.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from modelvc import Registry
from modelvc.fleet.controller import Controller
from modelvc.serving.runner import free_port

ROOT = Path(__file__).resolve().parents[1]
THREADS = 6


def _pg_database() -> str:
    url = subprocess.run(["bash", str(ROOT / "scripts/start-postgres.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    name = f"modelvc_bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def _registry(root: Path) -> tuple[Registry, np.ndarray]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    reg = Registry.init(root / "repo", meta_url=_pg_database())
    for n, hidden in enumerate([(32,), (64,)], 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = MLPClassifier(hidden, max_iter=40, random_state=n).fit(x, y)
        folder = root / f"ck{n}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(
            to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}).SerializeToString())
        reg.commit(folder, model="digits", branch="dev", message=f"mlp {hidden}")
    reg.promote("digits@v1", "production", reason="bench", create=True)
    return reg, x


# --- the load process
def load_main(urls: list[str], seconds: float, out: Path, stop: Path) -> None:
    """Until `stop` exists (or `seconds` pass): records (received at, version or -1,
    gateway, 503s retried on the way) per request."""
    from sklearn.datasets import load_digits

    x = (load_digits().data[:200] / 16).astype(np.float32)
    records: list[tuple[float, int, int, int]] = []
    lock = threading.Lock()
    end = time.time() + seconds
    done = threading.Event()

    def client(i: int) -> None:
        hosts = [u.removeprefix("http://").partition(":") for u in urls]
        conns = [http.client.HTTPConnection(h, int(port), timeout=30) for h, _, port in hosts]
        n, mine = i, []
        while time.time() < end and not done.is_set():
            k = n % len(conns)
            body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64],
                                           "data": x[n % len(x)].tolist()}]})
            n += 1
            v, unready = -1, 0
            for attempt in range(len(conns)):  # 503 (unready): the next gateway, at once
                g = (k + attempt) % len(conns)
                try:
                    conns[g].request("POST", "/v2/models/digits/infer", body,
                                     {"Content-Type": "application/json"})
                    resp = conns[g].getresponse()
                    resp.read()
                    status = resp.status
                    version = resp.getheader("x-modelvc-version", "-1")
                except (OSError, http.client.HTTPException):
                    conns[g].close()
                    break
                if status == 503:
                    unready += 1
                    continue
                v = int(version) if status == 200 else -1
                k = g
                break
            mine.append((time.time(), v, k, unready))
        with lock:
            records.extend(mine)

    def watch_stop() -> None:
        while not stop.exists() and time.time() < end:
            time.sleep(0.05)
        done.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for t in [*threads, threading.Thread(target=watch_stop, daemon=True)]:
        t.start()
    for t in threads:
        t.join()
    out.write_text(json.dumps(sorted(records)))


# --- the driver
def _serving(url: str) -> int:
    with urllib.request.urlopen(f"{url}/v2/models/digits", timeout=5) as r:
        return int(json.loads(r.read())["parameters"]["version"])


def _wait_all(urls: list[str], version: int) -> float:
    while not all(_serving(u) == version for u in urls):
        time.sleep(0.002)
    return time.time()


def _window(recs: list[list[float]], t0: float, t1: float, old: int, new: int) -> float:
    """First response of `new` to the last of `old`, among responses in [t0, t1)."""
    span = [r for r in recs if t0 <= r[0] < t1]
    first_new = min((r[0] for r in span if r[1] == new), default=None)
    last_old = max((r[0] for r in span if r[1] == old), default=None)
    if first_new is None or last_old is None:
        return 0.0
    return max(0.0, last_old - first_new)


def scenario(kind: str, reg: Registry, n: int, work: Path, batch: int = 1
             ) -> dict[str, Any]:
    reg.promote("digits@v1", "production", reason="bench reset", create=True)
    ports = [free_port() for _ in range(n)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    procs = []
    for i, p in enumerate(ports):
        cmd = [sys.executable, "-m", "modelvc.cli.main", "--registry", str(reg.where()[0].parent),
               "serve", "digits@production", "--port", str(p), "--grpc-port", "0",
               "--log-level", "warning",
               "--workers", "2"]
        if kind != "naive":
            cmd += ["--fleet", "--label", f"bench={kind}", "--replica-id", f"{kind}-g{i}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    ctl = Controller(reg, batch=batch) if kind != "naive" else None
    try:
        for u in urls:
            while True:
                try:
                    _serving(u)
                    break
                except OSError:
                    time.sleep(0.05)
        if ctl is not None:
            name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
            ctl.create(name, "digits", "production", strategy=kind,
                       selector={"bench": kind})
            assert ctl.rollout(name).ok
        out, stop = work / f"load-{kind}.json", work / f"stop-{kind}"
        load = subprocess.Popen([sys.executable, __file__, "--load", ",".join(urls),
                                 "--seconds", "60", "--out", str(out), "--stop", str(stop)])
        time.sleep(3)
        t0 = time.time()
        if ctl is not None:
            fwd = ctl.rollout(name, "v2")
            assert fwd.ok, fwd.reason
            t1 = time.time()
        else:
            reg.promote("digits@v2", "production", reason="bench")
            t1 = _wait_all(urls, 2)
        time.sleep(2)
        r0 = time.time()
        if ctl is not None:
            back = ctl.rollback(name)
            assert back.ok, back.reason
            r1 = time.time()
        else:
            reg.rollback("digits", "production", reason="bench")
            r1 = _wait_all(urls, 1)
        time.sleep(2)
        stop.touch()
        load.wait(60)
        recs = json.loads(out.read_text())
        return {"strategy": kind, "gateways": n, "batch": batch if kind == "rolling" else None,
                "requests": len(recs), "failed": sum(1 for r in recs if r[1] < 0),
                "unready_retried": sum(r[3] for r in recs),
                "forward_window_ms": 1e3 * _window(recs, t0, r0, 1, 2),
                "forward_s": t1 - t0,
                "rollback_window_ms": 1e3 * _window(recs, r0, r0 + 60, 2, 1),
                "rollback_s": r1 - r0}
    finally:
        if ctl is not None:
            ctl.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateways", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1, help="replicas per rolling step")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--load")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--stop", type=Path)
    args = ap.parse_args()
    if args.load:
        load_main(args.load.split(","), args.seconds, args.out, args.stop)
        return
    with tempfile.TemporaryDirectory() as tmp:
        reg, _ = _registry(Path(tmp))
        meta_url = reg.where()[1]
        try:
            rows = [scenario(k, reg, args.gateways, Path(tmp), args.batch)
                    for k in ("naive", "atomic", "rolling")]
        finally:
            reg.close()
            admin = sa.create_engine(sa.make_url(meta_url).set(database="postgres"),
                                     isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:  # our own generated name
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS '
                                     f'"{sa.make_url(meta_url).database}" WITH (FORCE)')
            admin.dispose()
    print(f"{args.gateways} gateways (processes), {THREADS} load threads in a separate "
          f"process; rolling in batches of {args.batch}")
    for r in rows:
        print(f"{r['strategy']:<7} requests {r['requests']:6d}  failed {r['failed']}  "
              f"503s retried {r['unready_retried']:4d}  "
              f"forward: window {r['forward_window_ms']:7.1f} ms, fleet on v2 after "
              f"{r['forward_s']:.3f} s  rollback: window {r['rollback_window_ms']:7.1f} ms, "
              f"fleet on v1 after {r['rollback_s']:.3f} s")
    a = rows[1]
    checks = [("atomic mixed-version window", max(a["forward_window_ms"],
                                                   a["rollback_window_ms"]), 50.0, "ms"),
              ("failed requests (all three)", sum(r["failed"] for r in rows), 0, ""),
              ("atomic fleet-wide rollback", a["rollback_s"], 1.0, "s")]
    for what, got, target, unit in checks:
        print(f"{'PASS' if got <= target else 'FAIL'}  {what:<30} {got:.3f} {unit}  "
              f"target <= {target} {unit}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
