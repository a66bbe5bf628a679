"""The gateway's Python per infer request, without sockets: one whole OIP JSON request
(digits, one row) fed to the gateway's HTTP protocol (serving/infer_protocol.py) N times
in one process, from `data_received` to the answer's write into a transport that drops
it. CPU time per request; `--profile` adds cProfile's top functions. The kernel's share
(a read and a write per request, epoll) is what bench/serving.py measures beyond this.

    python bench/serving_path.py            # 20,000 requests after 2,000 to warm up
    python bench/serving_path.py --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.server import ServerState

from modelvc.serving.config import load_config
from modelvc.serving.runner import _uvicorn_config, make_gateway

sys.path.insert(0, str(Path(__file__).parent))
from serving import _models  # the same digits models as bench/serving.py


class _Drop(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.answers, self.closing = 0, False

    def write(self, data: Any) -> None:
        self.answers += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelvc-bench-path-"))
    reg, x, _ = _models(tmp / "repo")
    cfg = load_config(None, {"models": [{"model": "digits"}], "port": 0, "grpc_port": 0,
                             "poll_interval": 5})
    gw = make_gateway(reg, cfg, tmp / "serve")
    body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64],
                                   "data": x[3].tolist()}]}).encode()
    req = (b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Accept-Encoding: identity\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def run() -> None:
        await gw.start()
        config = _uvicorn_config(gw, cfg, "warning")
        config.load()
        cls: Any = config.http_protocol_class
        proto = cls(config=config, server_state=ServerState(), app_state={})
        t = _Drop()
        proto.connection_made(t)
        for _ in range(2000):
            proto.data_received(req)
        c0 = time.process_time()
        for _ in range(args.n):
            proto.data_received(req)
        cpu = (time.process_time() - c0) / args.n
        assert t.answers == args.n + 2000, t.answers
        print(f"{cpu * 1e6:.1f} us of CPU per infer request (no sockets), "
              f"{args.n} requests")
        if args.profile:
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(args.n):
                proto.data_received(req)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        await gw.stop()

    uvloop.run(run())
    reg.close()


if __name__ == "__main__":
    main()
