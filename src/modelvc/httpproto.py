"""uvicorn's HTTP/1.1 protocols (h11, httptools) with a deadline for request headers.

uvicorn bounds a request head's size (h11: 16 KiB) but not its time: a
connection that sends `GET / HTTP/1.1\\r\\n` and then a byte a minute, or nothing, is
held forever (its keep-alive timer only runs between requests, and any byte cancels
it). Here every request head, from the connection's first byte or the end of the
previous response, must be complete within `header_timeout` seconds; otherwise the
connection is answered 408 with a JSON error and closed. Bodies are bounded by
httpguard.BodyGuard (its `body_timeout`), which sees the request only once its head is in.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import UsageError


def _timeout_response(seconds: float) -> bytes:
    # the shape of every error answer (httpguard, the routes): error, message, hint
    body = json.dumps({"error": "HeaderTimeout",
                       "message": f"the request headers did not arrive within {seconds:g} s",
                       "hint": "send the whole request head at once"}).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


class _HeadDeadline:
    """The deadline, for either uvicorn protocol: armed when a connection opens and when
    a response ends, disarmed when a request head is complete."""

    header_timeout = 30.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head(self) -> None:
        self._disarm_head()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_timeout_response(self.header_timeout))
            self.transport.close()


class HeaderDeadlineH11(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol (the server's) with the head deadline."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the parser failed)
            self._disarm_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # waiting for the next request's head (unless a pipelined one is already in)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        super().connection_lost(exc)


def _httptools_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderDeadlineHttpTools(_HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol (the gateway's, when installed) with the deadline."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head()

        def on_headers_complete(self) -> None:
            self._disarm_head()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.pipeline and not self.transport.is_closing():
                self._arm_head()  # the next head (a pipelined one has already arrived)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head()
            super().connection_lost(exc)

    return HeaderDeadlineHttpTools


def with_header_timeout(seconds: float, http: str = "h11") -> type[asyncio.Protocol]:
    """The protocol class to pass as `uvicorn.Config(http=...)`: uvicorn's `http`
    ("h11" or "httptools") with a deadline of `seconds` for each request head."""
    if not seconds > 0:
        raise UsageError(f"header_timeout must be a positive number, not {seconds}")
    base = _httptools_class() if http == "httptools" else HeaderDeadlineH11
    return type(base.__name__, (base,), {"header_timeout": float(seconds)})
