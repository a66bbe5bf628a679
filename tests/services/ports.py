"""Ports for the servers tests start, without the bind-release-reuse race.

`bind(("127.0.0.1", 0))` then close hands out a port the kernel may hand out again
before the server binds it (to another xdist worker, or another engineer's run). Ports
here come from below the kernel's ephemeral range (never handed out by `bind(0)` or
used as the source of an outgoing connection) through one counter for the whole
machine, advanced under a file lock: two calls anywhere on the machine never return the
same port until the counter wraps (12,000 ports later), and a port still in use then
fails the trial bind and is skipped.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path

LOW, HIGH = 20000, 32000  # below net.ipv4.ip_local_port_range (32768-60999 by default)
STATE = Path(tempfile.gettempdir()) / "modelvc-test-ports"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports no other caller of this module gets meanwhile."""
    fd = os.open(STATE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 16, 0).strip()
        nxt = int(raw) if raw.isdigit() and LOW <= int(raw) < HIGH else LOW
        out: list[int] = []
        for _ in range(HIGH - LOW):
            port, nxt = nxt, LOW if nxt + 1 >= HIGH else nxt + 1
            if _bindable(port):
                out.append(port)
                if len(out) == count:
                    break
        else:
            raise RuntimeError(f"no free port in {LOW}-{HIGH}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(nxt).encode(), 0)
        return out
    finally:
        os.close(fd)  # releases the lock


def free_port() -> int:
    return free_ports(1)[0]
