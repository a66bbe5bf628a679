"""What every request handler shares: the registry and the server's configuration."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import ModelvcError
from ..registry import Registry
from .logs import LOG


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
    upload_ttl_hours: float = 24.0  # how long an upload proves its sender has the bytes
    max_body_mb: int = 16  # any JSON request body (the routes below excepted)
    max_commit_mb: int = 64  # a commit's file list (POST /api/v1/models/M/commits)
    max_hf_commit_mb: int = 1024  # a Hugging Face commit (its files inline, base64)
    # an amend (POST /api/v1/models/M/amend): small edits, files inline, parsed whole
    max_amend_mb: int = 64
    body_timeout: float = 60.0  # seconds a request body may send nothing before 408
    header_timeout: float = 30.0  # seconds a request's head may take before 408 (httpproto)


class Possession:
    """Object ids each subject proved to hold by sending their bytes (verified against
    the id). A commit or pushed version may name another model's object only after such
    a proof: knowing an id is not enough. Kept in the registry database (the uploads
    table, Registry.record_uploads), so every server process on that database agrees:
    uploads through one process count for a commit through another. A proof lasts
    `ttl`; each process deletes expired rows at most once per PRUNE_EVERY seconds."""

    PRUNE_EVERY = 600.0

    def __init__(self, registry: Callable[[], Registry], ttl: timedelta) -> None:
        self._reg = registry
        self.ttl = ttl
        self._lock = threading.Lock()
        self._pruned = -math.inf  # monotonic time of the last expiry pass

    def add(self, who: str, ids: Iterable[str]) -> None:
        """Blocking (one write transaction): call it from a worker thread."""
        reg = self._reg()
        reg.record_uploads(who, ids)
        with self._lock:
            due = time.monotonic() - self._pruned >= self.PRUNE_EVERY
            if due:
                self._pruned = time.monotonic()
        if due:
            try:
                reg.expire_uploads(datetime.now(UTC) - self.ttl)
            except ModelvcError as exc:  # the upload is recorded; expiry can wait
                LOG.warning("expiring old uploads failed", extra={"error": str(exc)})

    def unproven(self, who: str, ids: Iterable[str]) -> list[str]:
        """The ids WHO has not uploaded within the last `ttl` (no query when none)."""
        ids = list(ids)
        if not ids:
            return []
        held = self._reg().uploaded(who, ids, since=datetime.now(UTC) - self.ttl)
        return [i for i in ids if i not in held]


@dataclass
class ServerState:
    config: ServerConfig
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _shared: Registry | None = None
    possession: Possession = field(init=False)

    def __post_init__(self) -> None:
        self.possession = Possession(self.registry,
                                     timedelta(hours=self.config.upload_ttl_hours))

    def registry(self) -> Registry:
        """One Registry for the process (thread-safe: MetaStore opens a connection per
        transaction, object stores are thread-safe)."""
        with self._lock:
            if self._shared is None:
                self._shared = Registry.open_local(Path(self.config.registry))
            return self._shared

    def check_ready(self) -> None:
        """Raise unless the metadata database and the object store answer."""
        self.registry().check_ready()

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
