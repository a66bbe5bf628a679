"""Leases: a named lock a process holds while it runs something (a deployment's
rollout), released by the operating system or the database when the process dies,
kill -9 included. Whoever finds work in progress (a deployment mid-switch) and can take
the lease knows that nobody is doing that work any more.

PostgreSQL: a session advisory lock on a connection held for the lease (the server
drops it with the session). SQLite: flock on a file beside the database (the kernel
drops it with the process)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from .. import interrupts

__all__ = ["hold"]


def _key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


@contextlib.contextmanager
def hold(engine: sa.Engine, name: str) -> Iterator[bool]:
    """Try to take lease `name` without waiting: yields whether this process holds it
    (then until the block ends)."""
    if engine.dialect.name == "postgresql":
        with interrupts.deferred():  # never cut between the lock's send and its answer
            conn = engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": _key(name)}).scalar())
        try:
            yield got
        finally:
            with interrupts.deferred(), conn:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
        return
    db = engine.url.database
    if not db or db == ":memory:":
        yield True  # one process: nothing to share with
        return
    path = Path(db).with_name(f"{Path(db).name}.lease-{_key(name) & 0xFFFFFFFF:08x}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        yield got
    finally:
        os.close(fd)  # releases the flock
