"""A real webhook receiver: http.server on 127.0.0.1 in a thread, verifying signatures."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelvc.webhooks import verify


@dataclass
class Received:
    event: str
    delivery: str
    doc: dict[str, Any]


@dataclass
class Receiver:
    """Accepts events whose signature verifies with `secret` (401 otherwise); answers
    503 to the next `fail_next` requests; can be stopped and restarted on its port."""

    secret: str
    port: int = 0
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with recv._lock:
                    if recv.fail_next > 0:
                        recv.fail_next -= 1
                        code = 503
                    elif not verify(recv.secret, raw, self.headers["X-Modelvc-Signature"]):
                        recv.rejected += 1
                        code = 401
                    else:
                        assert self.headers["Content-Type"] == "application/json"
                        recv.received.append(Received(self.headers["X-Modelvc-Event"],
                                                      self.headers["X-Modelvc-Delivery"],
                                                      json.loads(raw)))
                        code = 204
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: senders now get connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[tuple[str, str | None]]:
        return [(r.event, r.doc["target"]) for r in self.received]

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < end:
            time.sleep(0.02)
