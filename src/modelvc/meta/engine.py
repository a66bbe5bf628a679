"""Engine setup and the transaction runner (retries, error translation).

SQLite: WAL (readers never block the writer), a 30 s busy timeout, and write
transactions opened with BEGIN IMMEDIATE so two writers queue on the database
lock up front instead of one failing with "database is locked" when it upgrades
a read lock half way through. PostgreSQL: READ COMMITTED plus row locks taken by
the statements themselves (UPDATE ... RETURNING, CAS UPDATEs); serialization
failures and deadlocks are retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc

from .. import interrupts
from ..errors import Conflict, ModelvcError, StorageError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
RETRIES = 6
_WRITE = "modelvc_write"  # execution option: this transaction will write

# PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected.
_PG_RETRY = {"40001", "40P01"}


# libpq options for connections that must notice a dead network quickly.
NET_OPTIONS = {"connect_timeout": "2", "keepalives": "1", "keepalives_idle": "1",
               "keepalives_interval": "1", "keepalives_count": "3",
               "tcp_user_timeout": "3000"}


def with_net_timeouts(url: str) -> str:
    """The SQLAlchemy URL with NET_OPTIONS added (PostgreSQL; others unchanged)."""
    u = sa.make_url(url)
    if u.get_backend_name() != "postgresql":
        return url
    q = dict(u.query) | {k: v for k, v in NET_OPTIONS.items() if k not in u.query}
    return u.set(query=q).render_as_string(hide_password=False)


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> sa.Engine:
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u)
    return sa.create_engine(u, isolation_level="READ COMMITTED", pool_pre_ping=True)


def _sqlite_engine(u: sa.URL) -> sa.Engine:
    engine = sa.create_engine(
        u,
        # Connections go back to a pool shared by threads; SQLite itself is safe
        # for that since each connection is used by one thread at a time.
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so we can emit
        # BEGIN IMMEDIATE ourselves (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _retryable(err: exc.DBAPIError) -> bool:
    orig = err.orig
    if getattr(orig, "sqlstate", None) in _PG_RETRY:
        return True
    # SQLite: only if the busy timeout ran out; rare with BEGIN IMMEDIATE.
    return isinstance(err, exc.OperationalError) and "database is locked" in str(orig)


def translate(err: exc.SQLAlchemyError) -> ModelvcError:
    """A database failure nobody handled more specifically."""
    if isinstance(err, exc.IntegrityError):
        return Conflict(
            f"the registry database refused a change: {err.orig}",
            hint="another writer may have changed the same rows; re-read and retry",
        )
    return StorageError(
        f"the metadata database failed: {getattr(err, 'orig', None) or err}",
        hint="check that the database is reachable and writable, then retry",
    )


def run(
    engine: sa.Engine,
    fn: Callable[[sa.Connection], T],
    *,
    write: bool,
    retries: int = RETRIES,
) -> T:
    """Run `fn` in one transaction; retry it whole on transient conflicts.

    `fn` must be safe to re-run (it is: each attempt starts a fresh transaction).
    modelvc errors raised by `fn` roll back and propagate unchanged.
    """
    for attempt in range(retries):
        try:
            # A Ctrl-C waits for the transaction's end (interrupts.py: the pre-ping)
            with interrupts.deferred(), engine.connect() as conn:
                if write:
                    conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    return fn(conn)
        except exc.DBAPIError as err:
            if attempt + 1 < retries and _retryable(err):
                # Jittered exponential backoff so retrying writers spread out.
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            raise translate(err) from err
        except exc.SQLAlchemyError as err:
            raise translate(err) from err
    raise AssertionError("unreachable")  # pragma: no cover
