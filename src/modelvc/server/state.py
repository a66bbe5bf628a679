"""What every request handler shares: the registry and the server's configuration."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..registry import Registry


@dataclass
class ServerConfig:
    registry: str  # a registry folder (its config.json may point at PostgreSQL and S3)
    host: str = "127.0.0.1"
    port: int = 8470
    anonymous_read: bool = False  # allow unauthenticated reads (public registries)
    public_url: str | None = None  # how clients reach us (for URLs in responses)
    log_json: bool = True
    log_level: str = "info"
    graceful_timeout: float = 30.0  # seconds in-flight requests get after SIGTERM
    max_upload_mb: int = 4096  # largest raw segment a commit may upload
    upload_spool_mb: int = 64  # larger uploads go to a temp file, not memory


class Possession:
    """Object ids each subject proved to hold by sending their bytes (verified against
    the id), most recent first out of a bounded set. A commit or pushed version may
    name another model's object only after such a proof: knowing an id is not enough.
    Per server process: a version recorded through another server needs the bytes
    sent to that one (a client sends whatever that server reports missing)."""

    def __init__(self, limit: int = 500_000) -> None:
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, who: str, ids: Iterable[str]) -> None:
        with self._lock:
            for oid in ids:
                self._ids[(who, oid)] = None
                self._ids.move_to_end((who, oid))
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)

    def unproven(self, who: str, ids: Iterable[str]) -> list[str]:
        with self._lock:
            return [i for i in ids if (who, i) not in self._ids]



@dataclass
class ServerState:
    config: ServerConfig
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _shared: Registry | None = None
    possession: Possession = field(default_factory=Possession)

    def registry(self) -> Registry:
        """One Registry for the process (thread-safe: MetaStore opens a connection per
        transaction, object stores are thread-safe)."""
        with self._lock:
            if self._shared is None:
                self._shared = Registry.open(Path(self.config.registry))
            return self._shared

    def check_ready(self) -> None:
        """Raise unless the metadata database and the object store answer."""
        reg = self.registry()
        reg.meta.ping()
        reg.store.has("0" * 64)

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
