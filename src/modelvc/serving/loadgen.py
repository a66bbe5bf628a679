"""A small OIP load generator over keep-alive connections (stdlib only), or over gRPC
(`grpc://host:port`: the grpcio client, installed apart), used by the demo and, as
`python -m modelvc.serving.loadgen`, by bench/serving.py in its own process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from typing import Any

import numpy as np

from .tally import Tally as Tally  # where callers of loadgen find it


class Client:
    """OIP REST; `binary`: the input as raw bytes after the JSON header (the binary
    tensor extension), answers still JSON."""

    def __init__(self, url: str, model: str, *, binary: bool = False) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port or 80), timeout=60)
        self.model, self.binary = model, binary

    def infer(self, x: np.ndarray, *, req_id: str | None = None, key: str | None = None
              ) -> tuple[int, dict[str, Any]]:
        item: dict[str, Any] = {"name": "X", "datatype": "FP32", "shape": list(x.shape)}
        headers = {"Content-Type": "application/json"} | ({"X-Request-Key": key} if key else {})
        raw = b""
        if self.binary:
            raw = np.ascontiguousarray(x, "<f4").tobytes()
            item["parameters"] = {"binary_data_size": len(raw)}
        else:
            item["data"] = x.reshape(-1).tolist()
        body: dict[str, Any] = {"inputs": [item]}
        if req_id:
            body["id"] = req_id
        data = json.dumps(body).encode()
        if raw:
            headers |= {"Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(data))}
            data += raw
        self.conn.request("POST", f"/v2/models/{self.model}/infer", data, headers)
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


class GrpcClient:
    """The same calls over OIP gRPC (ModelInfer with raw_input_contents, as tritonclient
    sends); feedback is a REST-only route, so traffic with labels stays on REST."""

    def __init__(self, url: str, model: str) -> None:
        from .loadgen_grpc import import_grpcio
        from .oipgrpc import messages as pb

        grpc = import_grpcio()

        self.pb, self.model = pb, model
        self.channel = grpc.insecure_channel(url.removeprefix("grpc://"))
        self.call = self.channel.unary_unary(
            f"/{pb.SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString)
        self.error = grpc.RpcError

    def infer(self, x: np.ndarray, *, req_id: str | None = None, key: str | None = None
              ) -> tuple[int, dict[str, Any]]:
        req = self.pb.ModelInferRequest(model_name=self.model, id=req_id or "",
                                        raw_input_contents=[np.ascontiguousarray(
                                            x, "<f4").tobytes()])
        req.inputs.add(name="X", datatype="FP32", shape=list(x.shape))
        try:
            resp = self.call(req, metadata=(("x-request-key", key),) if key else None,
                             timeout=60)
        except self.error as exc:
            return 500, {"error": f"{exc.code()}: {exc.details()}"}
        return 200, {"model_version": resp.model_version}

    def feedback(self, req_id: str, label: int) -> int:
        raise NotImplementedError("feedback is a REST route")

    def close(self) -> None:
        self.channel.close()


def client_for(url: str, model: str, *, binary: bool = False) -> Client | GrpcClient:
    if url.startswith("grpc://"):
        return GrpcClient(url, model)
    return Client(url, model, binary=binary)


class Traffic:
    """`threads` callers sending rows of `x` (and, with `y`, feedback) until stopped;
    each waits `pause` seconds between requests (0: as fast as answered; tests that need
    a steady stream, not the most the CPUs can take, pass a few milliseconds)."""

    def __init__(self, url: str, model: str, x: np.ndarray, y: np.ndarray | None = None, *,
                 threads: int = 4, batch: int = 1, binary: bool = False,
                 pause: float = 0.0) -> None:
        self.url, self.model, self.x, self.y = url, model, x, y
        self.batch, self.binary, self.pause = batch, binary, pause
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
        client = client_for(self.url, self.model, binary=self.binary)
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
                client = client_for(self.url, self.model, binary=self.binary)
            dt = time.perf_counter() - t0
            if code == 200 and self.y is not None and self.batch == 1:
                client.feedback(req_id, int(self.y[i]))
            with self._lock:
                if code == 200:
                    self.tally.ok += 1
                    v = str(doc.get("model_version"))
                    self.tally.by_version[v] = self.tally.by_version.get(v, 0) + 1
                    self.tally.latencies.append(dt)
                    self.tally.starts.append(wall)
                else:
                    self.tally.failed += 1
                    self.tally.errors.append(f"{code}: {doc.get('error')}")
            n += 1
            if self.pause:
                self._stop.wait(self.pause)
        client.close()


def main(argv: list[str] | None = None) -> None:
    """Fixed concurrency for --seconds against URL; prints a JSON tally (for benchmarks)."""
    p = argparse.ArgumentParser(prog="python -m modelvc.serving.loadgen")
    p.add_argument("url", help="http://HOST:PORT (REST) or grpc://HOST:PORT")
    p.add_argument("--model", default="digits")
    p.add_argument("--inputs", required=True, help=".npy file of float32 rows")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--binary", action="store_true",
                   help="REST: send inputs as raw bytes (the OIP binary tensor extension)")
    a = p.parse_args(argv)
    x = np.load(a.inputs)
    if a.url.startswith("http://"):
        # One event loop, no thread per caller: the generator's own cost per request is
        # what it cannot measure, and on one core threads pay for every GIL hand-off.
        from .loadgen_fast import closed_loop

        t = closed_loop(a.url, a.model, x, callers=a.threads, seconds=a.seconds,
                        binary=a.binary, started=lambda: print("started", flush=True))
    else:
        from .loadgen_grpc import grpc_closed_loop

        t = grpc_closed_loop(a.url, a.model, x, callers=a.threads, seconds=a.seconds,
                             started=lambda: print("started", flush=True))
    json.dump({"ok": t.ok, "failed": t.failed, "errors": t.errors[:5],
               "by_version": t.by_version, "latencies": t.latencies, "starts": t.starts},
              sys.stdout)


if __name__ == "__main__":
    main()
