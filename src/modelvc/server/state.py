"""What every request handler shares: the registry and the server's configuration."""

from __future__ import annotations

import threading
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


@dataclass
class ServerState:
    config: ServerConfig
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _shared: Registry | None = None

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
