"""Wake-ups from the metadata database: PostgreSQL LISTEN on a dedicated connection.

SQLite has no notifications: `listener()` returns None there and callers poll. The
connection uses TCP keepalives and a user timeout so a host cut off from the network
notices within seconds, reconnects when it can, and then re-reads everything (a
notification sent meanwhile is lost: `on_connect` is the cue to reconcile).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..meta.engine import with_net_timeouts

log = logging.getLogger("modelvc.fleet")
Handler = Callable[[str, dict[str, Any]], None]

def is_postgres(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "postgresql"


class Listener:
    """A thread that LISTENs on `channels` and calls `on_message(channel, payload)`."""

    def __init__(self, url: str, channels: list[str], on_message: Handler,
                 on_connect: Callable[[], None] | None = None) -> None:
        u = sa.make_url(with_net_timeouts(url)).set(drivername="postgresql")
        self.dsn = u.render_as_string(hide_password=False)
        self.channels, self.on_message, self.on_connect = channels, on_message, on_connect
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelvc-listen", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    for ch in self.channels:
                        conn.execute(f"LISTEN {ch}")  # our own constant names
                    self.connected.set()
                    backoff = 0.1
                    if self.on_connect is not None:
                        self.on_connect()
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._deliver(n.channel, n.payload)
                        conn.execute("SELECT 1")  # a dead link surfaces here, not never
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("listening for fleet changes: %s (retrying)", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _deliver(self, channel: str, payload: str) -> None:
        try:
            doc = json.loads(payload)
        except json.JSONDecodeError:
            return
        try:
            self.on_message(channel, doc)
        except Exception:  # a handler bug must not stop the listener
            log.exception("handling %s", channel)
