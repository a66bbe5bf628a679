"""The server's memory under oversized bodies: 300 MB sent (not just announced) without
a token, and over a route's cap with one, must not grow the process (issue 12 measured
86 -> 966 MB before bodies were refused unread). A bound on growth, not a timing."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
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


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


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
    ("/api/v1/models/x/commits", True, b" 413 "), ("/api/v1/models/x/amend", True, b" 413 ")])
def test_an_oversized_body_does_not_grow_the_server(server: tuple[ServerProcess, str], path: str,
                                                    auth: bool, status: bytes) -> None:
    srv, token = server
    assert srv.proc is not None
    before = _rss(srv.proc.pid)
    answer = _send(srv.port, path, token if auth else None)
    assert status in answer.split(b"\r\n", 1)[0], answer[:200]
    grown = _rss(srv.proc.pid) - before
    assert grown < GROWTH, f"{path}: RSS grew {grown >> 20} MiB"


def test_a_large_hf_commit_body_is_read_as_it_arrives(
        server: tuple[ServerProcess, str]) -> None:
    """213 MiB of base64 on one NDJSON line, then an operation the server refuses: the
    whole body is read and decoded (into a temp file) before the 400, and the server's
    peak RSS grows by a few buffers (read whole it grew by ~1 GiB)."""
    import base64
    import json

    srv, token = server
    assert srv.proc is not None
    content = base64.b64encode(bytes(range(256)) * (640 << 10))  # 160 MiB decoded
    head = json.dumps({"key": "header", "value": {"summary": "big"}}).encode() + b"\n"
    before_file = b'{"key": "file", "value": {"content": "'
    after_file = (b'", "path": "w.bin", "encoding": "base64"}}\n'
                  b'{"key": "lfsFile", "value": {"path": "x"}}\n')
    size = len(head) + len(before_file) + len(content) + len(after_file)
    pieces = [head, before_file, *(content[i:i + (1 << 20)] for i in range(
        0, len(content), 1 << 20)), after_file]
    with httpx.Client(base_url=srv.url, timeout=600) as c:
        assert c.post("/api/repos/create", json={"name": "big"},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200
        Path(f"/proc/{srv.proc.pid}/clear_refs").write_text("5")  # peak := current
        before = _rss(srv.proc.pid)
        r = c.post("/api/models/big/commit/main", content=iter(pieces),
                   headers={"Authorization": f"Bearer {token}",
                            "Content-Length": str(size)})
    assert r.status_code == 400 and "line 3: lfsFile" in r.text, r.text[:300]
    peak = _peak(srv.proc.pid) - before
    print(f"HF commit body of {size >> 20} MiB: peak RSS +{peak >> 20} MiB")
    assert peak < GROWTH, f"peak RSS grew {peak >> 20} MiB"


AMEND_CAP = 64 << 20  # ServerConfig.max_amend_mb's default


def test_an_amend_is_bounded_by_its_cap(server: tuple[ServerProcess, str]) -> None:
    """An amend's JSON is parsed whole (files inline, base64; meant for small edits): a
    body just under its cap (max_amend_mb, 64 MiB) is stored, and the server's peak RSS
    grows by a small multiple of the cap, so the cap bounds what an amend costs (over
    the cap: 413 unread, above). With the HF commit's cap (1 GiB, before) one amend
    could cost several GiB."""
    import base64
    import json

    srv, token = server
    assert srv.proc is not None
    data = bytes(range(256)) * ((AMEND_CAP - (1 << 20)) * 3 // 4 // 256)
    body = json.dumps({"message": "big", "add": {"w.bin": base64.b64encode(data).decode()}}
                      ).encode()
    assert len(body) < AMEND_CAP
    Path(f"/proc/{srv.proc.pid}/clear_refs").write_text("5")  # peak := current
    before = _rss(srv.proc.pid)
    with httpx.Client(base_url=srv.url, timeout=600) as c:
        r = c.post("/api/v1/models/amended/amend", content=body,
                   headers={"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    peak = _peak(srv.proc.pid) - before
    print(f"amend body of {len(body) >> 20} MiB: peak RSS +{peak >> 20} MiB")
    assert peak < 8 * AMEND_CAP, f"peak RSS grew {peak >> 20} MiB"
    with Registry.open(srv.registry) as reg:
        assert reg.manifest("amended@main").files[0].size == len(data)
