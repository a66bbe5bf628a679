"""An S3 outage on demand: a reverse proxy in a thread in front of a real SeaweedFS.

Requests go through unchanged (the Host header included, so SigV4 signatures still
match) until `refuse(methods)`: from then on requests with those methods are answered
503 ServiceUnavailable, as S3 answers during an outage, until `heal()`. Reads can stay
up while writes fail, which is what an object store under trouble often does.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

WRITES = frozenset({"PUT", "POST", "DELETE"})
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te",
       "trailer", "expect"}
OUTAGE = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
          b"<Message>injected outage</Message></Error>")


class S3Fault:
    def __init__(self, endpoint: str) -> None:
        up = urlsplit(endpoint)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.refused: frozenset[str] = frozenset()
        self.only: str | None = None  # refuse only requests whose path holds this
        self.log: list[tuple[str, str, int]] = []  # method, path, status
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def refuse(self, methods: Iterable[str] = WRITES, *, only: str | None = None) -> None:
        """Answer 503 to METHODS (to those on paths holding ONLY, if given)."""
        self.only = only
        self.refused = frozenset(methods)

    def heal(self) -> None:
        self.refused = frozenset()

    def refusals(self) -> int:
        with self._lock:
            return sum(1 for *_, status in self.log if status == 503)

    def __enter__(self) -> S3Fault:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _record(self, status: int) -> None:
                with proxy._lock:
                    proxy.log.append((self.command, self.path, status))

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.command in proxy.refused and (
                        proxy.only is None or proxy.only in self.path):
                    self._record(503)
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(OUTAGE)))
                    self.end_headers()
                    self.wfile.write(OUTAGE)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self._record(resp.status)
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    # A HEAD answers the object's length with no body.
                    length = resp.getheader("content-length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward

        return Handler


__all__ = ["WRITES", "S3Fault"]
