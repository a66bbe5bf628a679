"""The gateway's memory under decompression bombs and oversized bodies, measured on a
`modelvc serve` process of its own (issue 12 measured RSS 160 MB -> 2.16 GB for a 1 MB
gzip of 1 GiB of zeros, and -> 966 MB for a 400 MB body). Each request is actually
sent, answered 413, and grows the process's *peak* RSS (VmHWM, reset before each
request through /proc/PID/clear_refs) by less than the decompressed cap plus a margin:
a bound on memory, not a timing."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.bombs import bomb
from tests.services.ports import free_port
from tests.serving.conftest import Digits, commit_onnx, digits  # noqa: F401 (the fixture)

INFLATED_MB = 32  # the gateway's max_decompressed_mb here (default 256)
BODY_MB = 16  # its max_body_mb (default 64)
GROWTH = (INFLATED_MB + 64) << 20  # the cap, plus buffers and the allocator's slack
SENT = 400 << 20  # an oversized body, sent whole as far as the gateway takes it


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no {key}")


def _send(port: int, head: str, body: Iterator[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(head.encode() + b"\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in body:
                s.sendall(piece)
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while piece := s.recv(65536):
                data += piece
    return data


def _zeros(total: int) -> Iterator[bytes]:
    chunk = b"0" * (1 << 20)
    for _ in range(total // len(chunk)):
        yield chunk


def _chunked(total: int) -> Iterator[bytes]:
    for piece in _zeros(total):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, digits: Digits  # noqa: F811
            ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    tmp = tmp_path_factory.mktemp("gwmem")
    with Registry.init(tmp / "repo") as reg:
        commit_onnx(reg, tmp, digits.good, "v1")
        reg.promote("digits@v1", "production", reason="first", create=True)
    port = free_port()
    cfg = tmp / "serve.toml"
    cfg.write_text(f"max_body_mb = {BODY_MB}\nmax_decompressed_mb = {INFLATED_MB}\n")
    log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvc.cli.main", "--registry", str(tmp / "repo"), "serve",
         "digits@production", "--config", str(cfg), "--port", str(port), "--grpc-port", "0",
         "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # a hang guard for a loaded machine
        while True:
            assert proc.poll() is None, (tmp / "gateway.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                answer = _send(port, "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n"
                               "Connection: close\r\n", iter(()))
                if b" 200 " in answer.split(b"\r\n", 1)[0]:
                    break
            assert time.monotonic() < deadline, "the gateway never got ready"
            time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


INFER = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("case", ["gzip bomb", "deflate bomb", "oversized", "oversized chunked"])
def test_a_bomb_or_oversized_body_is_413_and_bounded(
        gateway: tuple[subprocess.Popen[bytes], int], case: str) -> None:
    proc, port = gateway
    if case.endswith("bomb"):
        body = bomb(case.split()[0], 1024)  # 1 GiB of zeros
        assert len(body) < 2 << 20
        head = INFER + (f"Content-Encoding: {case.split()[0]}\r\n"
                        f"Content-Length: {len(body)}\r\n")
        pieces: Iterator[bytes] = iter([body])
    elif case == "oversized":
        head, pieces = INFER + f"Content-Length: {SENT}\r\n", _zeros(SENT)
    else:
        head, pieces = INFER + "Transfer-Encoding: chunked\r\n", _chunked(SENT)
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status(proc.pid, "VmRSS")
    answer = _send(port, head, pieces)
    assert b" 413 " in answer.split(b"\r\n", 1)[0], answer[:300]
    peak = _status(proc.pid, "VmHWM") - before
    print(f"{case}: peak RSS +{peak >> 20} MiB over {before >> 20} MiB")
    assert peak < GROWTH, f"{case}: peak RSS grew {peak >> 20} MiB"
