"""gRPC's unary calls served over HTTP/2 in the gateway's own event loop.

grpc.aio runs HTTP/2 in gRPC core's threads and hands every call to the loop's thread;
at 8 callers on one core a gRPC call cost ~350 us of CPU against ~115 us for a REST one
in the same gateway (docs/benchmarks.md, session 15). Here the frames are read and
written by the loop that runs the gateway (connection.py, http2.py) and a call costs a
Task. The protocol's wire format: github.com/grpc/grpc, doc/PROTOCOL-HTTP2.md.
"""

from __future__ import annotations

import asyncio

from .calls import Endpoint, Handler
from .connection import Connection


class GrpcServer:
    """One service's unary methods on HOST:PORT in the running loop."""

    def __init__(self, service: str, handlers: dict[str, Handler], *,
                 limit: int = 2**31 - 1) -> None:
        self.endpoint = Endpoint(service.encode(), {k.encode(): v for k, v in
                                                    handlers.items()}, limit)
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self.endpoint, self.connections), host, port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Stop listening, GOAWAY every connection, wait up to GRACE seconds for the
        calls in flight, then close what is left."""
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.goaway()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while any(c.streams for c in self.connections) and loop.time() < end:
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
