"""Leases: a named lock a process holds while it runs something (a deployment's
rollout), released by the operating system or the database when the process dies,
kill -9 included. Whoever finds work in progress (a deployment mid-switch) and can take
the lease knows that nobody is doing that work any more.

PostgreSQL: a session advisory lock on a connection held for the lease. The server
drops it with the session, but a machine that vanished (power, network) leaves its
connection half-open until TCP gives up (hours, by the kernels' keepalive defaults), and
a stopped process keeps it forever. So the session ends itself once idle for `ttl()`
seconds (`idle_session_timeout`, PostgreSQL 14+) and a thread of the holder renews it
(a `SELECT 1`) every quarter of that: a holder that is gone or stopped loses the lease
within `ttl()`. A holder that was only paused longer than that and comes back finds
its deployment moved on: every step of a rollout is a compare-and-swap on the epoch
(fleet/controller.py), so the lease decides who works, never what is true.
SQLite: flock on a file beside the database (the kernel drops it with the process;
one machine, so nothing is left half-open)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from .. import interrupts

__all__ = ["hold", "ttl"]

TTL = 60.0  # seconds a lost holder keeps a PostgreSQL lease (MODELVC_LEASE_TTL)


def ttl() -> float:
    """How long a holder that stopped renewing keeps a PostgreSQL lease, in seconds."""
    return max(1.0, float(os.environ.get("MODELVC_LEASE_TTL", TTL)))


def _key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


class _Renewal:
    """Keeps the lease's session from idling out while its holder runs: a query every
    `every` seconds on its own thread (the holder's main thread may be busy for long)."""

    def __init__(self, conn: sa.Connection, every: float) -> None:
        self._conn = conn
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True,
                                        name="modelvc-lease")
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self._conn.execute(sa.text("SELECT 1"))
            except sa.exc.DBAPIError:
                self.lost = True  # the session ended: the lock went with it
                return

    def stop(self) -> bool:
        """Stop renewing; whether the session lived throughout."""
        self._stop.set()
        self._thread.join()
        return not self.lost


@contextlib.contextmanager
def _advisory(engine: sa.Engine, name: str) -> Iterator[bool]:
    key = {"k": _key(name)}
    with interrupts.deferred():  # never cut between the lock's send and its answer
        conn = engine.connect()
        conn.execution_options(isolation_level="AUTOCOMMIT")
        got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), key).scalar())
        bounded = got and (engine.dialect.server_version_info or (0,)) >= (14,)
        if bounded:
            conn.execute(sa.text("SELECT set_config('idle_session_timeout', :ms, false)"),
                         {"ms": str(int(ttl() * 1000))})
    renewal = _Renewal(conn, ttl() / 4) if bounded else None
    try:
        yield got
    finally:
        with interrupts.deferred():
            alive = renewal.stop() if renewal is not None else True
            try:
                if not alive:
                    conn.invalidate()  # its session ended (idled out): nothing is held
                if got and alive:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), key)
                if bounded and alive:  # the connection goes back to the pool
                    conn.execute(sa.text("RESET idle_session_timeout"))
            except sa.exc.DBAPIError:
                conn.invalidate()  # its session ended (idled out): nothing is held
            finally:
                conn.close()


@contextlib.contextmanager
def hold(engine: sa.Engine, name: str) -> Iterator[bool]:
    """Try to take lease `name` without waiting: yields whether this process holds it
    (then until the block ends, or for PostgreSQL until it stops renewing: see above)."""
    if engine.dialect.name == "postgresql":
        with _advisory(engine, name) as got:
            yield got
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
