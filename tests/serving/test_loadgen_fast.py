"""The benchmark's load generator (one event loop, raw keep-alive connections) against a
real gateway: JSON and binary inputs are answered, every answer is counted once."""

from __future__ import annotations

from typing import Any

import pytest

from modelvc.serving.loadgen_fast import Requests, closed_loop, parse_response

from .conftest import Digits, Start


@pytest.mark.parametrize("binary", [False, True])
def test_closed_loop_counts_every_answer(serve_reg: Any, start_gateway: Start,
                                        digits: Digits, binary: bool) -> None:
    srv = start_gateway(serve_reg)
    seen: list[bool] = []
    t = closed_loop(srv.url, "digits", digits.x[:50], callers=3, seconds=1.0,
                    binary=binary, started=lambda: seen.append(True))
    assert seen == [True]
    assert t.failed == 0, t.errors
    assert t.ok > 0 and t.by_version == {"1": t.ok}
    assert len(t.latencies) == len(t.starts) == t.ok


def test_refusals_are_failures_not_answers(serve_reg: Any, start_gateway: Start,
                                           digits: Digits) -> None:
    srv = start_gateway(serve_reg)
    t = closed_loop(srv.url, "no-such-model", digits.x[:5], callers=1, seconds=0.5)
    assert t.ok == 0 and t.failed > 0
    assert t.errors[0].startswith("404: ")


def test_requests_and_answers_are_plain_http() -> None:
    import numpy as np

    req = Requests("h", "m", np.zeros((2, 3), np.float32), binary=True).make(1, "r1", "k")
    head, _, body = req.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n")
    assert b"Inference-Header-Content-Length: " in head
    assert body.startswith(b'{"id":"r1","inputs":') and body.endswith(bytes(12))
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1"
    assert parse_response(answer) == (200, {b"content-length": b"2"}, b"{}", b"HTTP/1.1")
    assert parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}") is None


def test_closed_loop_runs_under_a_running_event_loop(serve_reg: Any, start_gateway: Start,
                                                     digits: Digits) -> None:
    # A caller that already runs a loop in this thread (a notebook, a sync Playwright
    # session) still gets its tally. The loop runs in a thread of its own: the test
    # worker's thread may already run one (a UI module's sync Playwright before this
    # module on the same worker), where asyncio.run itself refuses to start.
    import asyncio
    import threading

    srv = start_gateway(serve_reg)

    async def inside() -> Any:
        assert asyncio.get_running_loop() is not None
        return closed_loop(srv.url, "digits", digits.x[:5], callers=1, seconds=0.3)

    got: list[Any] = []
    caller = threading.Thread(target=lambda: got.append(asyncio.run(inside())))
    caller.start()
    caller.join()
    assert len(got) == 1, "closed_loop raised inside the running loop (see the thread's traceback)"
    t = got[0]
    assert t.ok > 0 and t.failed == 0


def test_grpc_closed_loop_counts_every_answer(serve_reg: Any, start_gateway: Start,
                                             digits: Digits) -> None:
    """The gRPC callers (one loop, its own HTTP/2) against the gateway's OIP gRPC service:
    every answer counted once, a refusal (an unknown model) as a failure."""
    from modelvc.serving.loadgen_grpc import grpc_closed_loop
    from tests.services.ports import free_port

    port = free_port()
    start_gateway(serve_reg, grpc_port=port)
    seen: list[bool] = []
    t = grpc_closed_loop(f"grpc://127.0.0.1:{port}", "digits", digits.x[:50], callers=3,
                         seconds=1.0, started=lambda: seen.append(True))
    assert seen == [True]
    assert t.failed == 0, t.errors
    assert t.ok > 0 and t.by_version == {"1": t.ok}
    assert len(t.latencies) == len(t.starts) == t.ok
    bad = grpc_closed_loop(f"grpc://127.0.0.1:{port}", "no-such-model", digits.x[:5],
                           callers=1, seconds=0.3)
    assert bad.ok == 0 and bad.failed > 0
    assert bad.errors[0].startswith("StatusCode.NOT_FOUND"), bad.errors[0]


def test_grpc_callers_against_grpcio_server(digits: Digits) -> None:
    """The generator's own HTTP/2 against gRPC core's server (grpcio, as MLServer runs
    it): answers from a table other than the gateway's (Huffman, dynamic entries)."""
    from concurrent import futures

    import grpc

    from modelvc.serving.loadgen_grpc import grpc_closed_loop
    from modelvc.serving.oipgrpc import messages as pb

    seen_ids: list[str] = []

    def infer(req: Any, ctx: Any) -> Any:
        seen_ids.append(req.id)
        ctx.set_trailing_metadata((("x-trailer", "t"),))
        return pb.ModelInferResponse(model_name=req.model_name, model_version="7",
                                     id=req.id)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(pb.SERVICE, {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        t = grpc_closed_loop(f"grpc://127.0.0.1:{port}", "digits", digits.x[:20],
                             callers=3, seconds=0.5)
    finally:
        server.stop(None)
    assert t.failed == 0, t.errors
    assert t.ok > 0 and t.by_version == {"7": t.ok}
    assert len(seen_ids) >= t.ok and all(i.startswith("w") for i in seen_ids)
