"""The load generator's OIP gRPC callers on one event loop (`python -m
modelvc.serving.loadgen grpc://...`): grpc.aio, CALLERS concurrent calls on one channel,
each sending its next ModelInfer (raw_input_contents, as tritonclient sends) when the
answer to its last one is in. A thread per caller with the blocking stub cost the
generator ~0.4 ms of its one core per request, so at 8 callers it measured itself
(bench/serving.py, docs/benchmarks.md session 15), not the servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .loadgen_fast import run_loop
from .tally import Tally


def import_grpcio() -> Any:
    """grpcio, the client side only (the gateway serves gRPC without it)."""
    try:
        import grpc
    except ImportError as exc:
        raise SystemExit("a grpc:// load needs the grpcio client: pip install grpcio "
                         "(modelvc's test extra brings it with tritonclient[grpc])") from exc
    return grpc


def grpc_closed_loop(url: str, model: str, x: np.ndarray, *, callers: int, seconds: float,
                     started: Callable[[], None] | None = None) -> Tally:
    """CALLERS callers, each one ModelInfer at a time, for SECONDS."""
    grpc = import_grpcio()
    from .oipgrpc import messages as pb

    tally = Tally()
    rows = [np.ascontiguousarray(x[i:i + 1], "<f4").tobytes() for i in range(len(x))]
    shape = [1, *x.shape[1:]]

    async def caller(call: Any, worker: int, end: float) -> None:
        rng = np.random.default_rng(worker)
        n = 0
        while time.perf_counter() < end:
            req = pb.ModelInferRequest(model_name=model, id=f"w{worker}-{n}",
                                       raw_input_contents=[rows[int(rng.integers(0, len(rows)))]])
            req.inputs.add(name="X", datatype="FP32", shape=shape)
            key = f"user-{rng.integers(1 << 30)}"
            n += 1
            t0, wall = time.perf_counter(), time.time()
            try:
                resp = await call(req, metadata=(("x-request-key", key),), timeout=60)
            except grpc.aio.AioRpcError as exc:
                tally.failed += 1
                tally.errors.append(f"{exc.code()}: {exc.details()}")
                continue
            dt = time.perf_counter() - t0
            tally.ok += 1
            v = str(resp.model_version)
            tally.by_version[v] = tally.by_version.get(v, 0) + 1
            tally.latencies.append(dt)
            tally.starts.append(wall)

    async def main() -> None:
        async with grpc.aio.insecure_channel(url.removeprefix("grpc://")) as channel:
            call = channel.unary_unary(
                f"/{pb.SERVICE}/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString)
            if started is not None:
                started()
            end = time.perf_counter() + seconds
            await asyncio.gather(*(caller(call, w, end) for w in range(callers)))

    run_loop(main)
    return tally
