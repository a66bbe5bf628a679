"""A small OIP load generator over keep-alive connections (stdlib only), used by the
demo and, as `python -m modelvc.serving.loadgen`, by bench/serving.py in its own process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Client:
    def __init__(self, url: str, model: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port or 80), timeout=60)
        self.model = model

    def infer(self, x: np.ndarray, *, req_id: str | None = None, key: str | None = None
              ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"inputs": [{"name": "X", "datatype": "FP32",
                                            "shape": list(x.shape),
                                            "data": x.reshape(-1).tolist()}]}
        if req_id:
            body["id"] = req_id
        headers = {"Content-Type": "application/json"} | ({"X-Request-Key": key} if key else {})
        self.conn.request("POST", f"/v2/models/{self.model}/infer", json.dumps(body), headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def feedback(self, req_id: str, label: int) -> int:
        self.conn.request("POST", f"/v2/models/{self.model}/feedback",
                          json.dumps({"id": req_id, "label": label}),
                          {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        resp.read()
        return resp.status

    def close(self) -> None:
        self.conn.close()


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # wall-clock start of each answer
    errors: list[str] = field(default_factory=list)


class Traffic:
    """`threads` callers sending rows of `x` (and, with `y`, feedback) until stopped."""

    def __init__(self, url: str, model: str, x: np.ndarray, y: np.ndarray | None = None, *,
                 threads: int = 4, batch: int = 1) -> None:
        self.url, self.model, self.x, self.y = url, model, x, y
        self.batch = batch
        self.tally = Tally()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.tally

    def _run(self, worker: int) -> None:
        client = Client(self.url, self.model)
        rng = np.random.default_rng(worker)
        n = 0
        while not self._stop.is_set():
            i = int(rng.integers(0, len(self.x) - self.batch + 1))
            req_id = f"w{worker}-{n}"
            t0, wall = time.perf_counter(), time.time()
            try:
                code, doc = client.infer(self.x[i:i + self.batch], req_id=req_id,
                                         key=f"user-{rng.integers(1 << 30)}")
            except OSError as exc:
                code, doc = 0, {"error": repr(exc)}
                client.close()
                client = Client(self.url, self.model)
            dt = time.perf_counter() - t0
            if code == 200 and self.y is not None and self.batch == 1:
                client.feedback(req_id, int(self.y[i]))
            with self._lock:
                if code == 200:
                    self.tally.ok += 1
                    v = str(doc["model_version"])
                    self.tally.by_version[v] = self.tally.by_version.get(v, 0) + 1
                    self.tally.latencies.append(dt)
                    self.tally.starts.append(wall)
                else:
                    self.tally.failed += 1
                    self.tally.errors.append(f"{code}: {doc.get('error')}")
            n += 1
        client.close()


def main(argv: list[str] | None = None) -> None:
    """Fixed concurrency for --seconds against URL; prints a JSON tally (for benchmarks)."""
    p = argparse.ArgumentParser(prog="python -m modelvc.serving.loadgen")
    p.add_argument("url")
    p.add_argument("--model", default="digits")
    p.add_argument("--inputs", required=True, help=".npy file of float32 rows")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args(argv)
    x = np.load(a.inputs)
    traffic = Traffic(a.url, a.model, x, threads=a.threads).start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    time.sleep(a.seconds)
    t = traffic.stop()
    json.dump({"ok": t.ok, "failed": t.failed, "errors": t.errors[:5],
               "by_version": t.by_version, "latencies": t.latencies, "starts": t.starts},
              sys.stdout)


if __name__ == "__main__":
    main()
