"""A small reverse proxy in a thread, standing in for a load balancer in front of
several server processes: `route(method, path)` picks the backend of each request, and
every forwarded request is logged as (method, path, backend index, status). `alter`
(path, body) -> body stands in for something on the way that changes answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
       "proxy-connection", "upgrade", "te", "trailer"}


class Balancer:
    def __init__(self, backends: list[str], route: Callable[[str, str], int], *,
                 alter: Callable[[str, bytes], bytes] | None = None) -> None:
        self.backends = backends
        self.route = route
        self.alter = alter
        self.log: list[tuple[str, str, int, int]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=120)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def sent(self, backend: int, method: str, fragment: str) -> int:
        """How many METHOD requests whose path contains FRAGMENT went to BACKEND."""
        return sum(1 for m, p, b, _ in self.log if b == backend and m == method
                   and fragment in p)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        lb = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    self.send_error(411, "this test balancer needs Content-Length")
                    return
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                backend = lb.route(self.command, self.path.split("?")[0])
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                resp = lb._client.request(self.command, lb.backends[backend] + self.path,
                                          headers=headers, content=body)
                with lb._lock:
                    lb.log.append((self.command, self.path, backend, resp.status_code))
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP and k.lower() != "content-encoding":
                        self.send_header(k, v)
                body = resp.content if lb.alter is None else lb.alter(self.path, resp.content)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        return Handler
