"""The server's memory under oversized bodies: 300 MB sent (not just announced) without
a token, and over a route's cap with one, must not grow the process (issue 12 measured
86 -> 966 MB before bodies were refused unread). A bound on growth, not a timing."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.server import ServerProcess, grant_token

BODY = 300 << 20
GROWTH = 64 << 20  # far below one body; what refusing unread costs is a few buffers


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def _send(port: int, path: str, token: str | None) -> bytes:
    """Announce and send BODY bytes (as far as the server takes them); its answer."""
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BODY}\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "") + "\r\n")
    chunk = b"[" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(BODY // len(chunk)):
                s.sendall(chunk)
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while piece := s.recv(65536):
                data += piece
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    tmp = tmp_path_factory.mktemp("memory")
    Registry.init(tmp / "repo").close()
    srv = ServerProcess(tmp / "repo", tmp / "server.log").start()
    try:
        yield srv, grant_token(tmp / "repo", "root", "admin", "*")
    finally:
        srv.stop()


@pytest.mark.parametrize(("path", "auth", "status"), [
    ("/api/repos/create", False, b" 401 "), ("/api/v1/tokens", False, b" 401 "),
    ("/api/v1/models/x/commits", False, b" 401 "), ("/api/v1/tokens", True, b" 413 "),
    ("/api/v1/models/x/commits", True, b" 413 ")])
def test_an_oversized_body_does_not_grow_the_server(server: tuple[ServerProcess, str], path: str,
                                                    auth: bool, status: bytes) -> None:
    srv, token = server
    assert srv.proc is not None
    before = _rss(srv.proc.pid)
    answer = _send(srv.port, path, token if auth else None)
    assert status in answer.split(b"\r\n", 1)[0], answer[:200]
    grown = _rss(srv.proc.pid) - before
    assert grown < GROWTH, f"{path}: RSS grew {grown >> 20} MiB"
