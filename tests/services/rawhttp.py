"""One HTTP/1.1 request over a raw socket: heads and bodies no HTTP client would send
(a length never fulfilled, NULs, bombs), and the status of whatever came back."""

from __future__ import annotations

import contextlib
import re
import socket


def raw_request(host: str, port: int, head: str, body: bytes = b"", *,
                timeout: float = 60) -> tuple[int, bytes]:
    """Send HEAD (request line and headers, CRLF-separated) and BODY; read until the
    server closes or TIMEOUT passes; (status, bytes received)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        # The server may answer and close before taking it all: then read the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(head.encode("latin-1") + b"\r\n" + body)
        return read_answer(s)


def read_answer(s: socket.socket) -> tuple[int, bytes]:
    """Read until the server closes (or the socket's timeout passes): (status of the
    first answer, bytes received)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert m, f"no HTTP answer: {data[:200]!r}"
    return int(m.group(1)), data
