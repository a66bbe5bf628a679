"""Keyed checkpoints of the audit chain, kept outside the database.

The audit chain (meta/governance.py) is a BLAKE3 hash chain: an edit of one entry
breaks it, but whoever can write the database can edit an entry and recompute every
hash after it. So each process that appends to the chain also seals the new head once
its transaction has committed: one line `{"id", "hash", "mac"}` appended to
`.modelvc/audit/checkpoints`, the MAC an HMAC-SHA256 under a key that is not in the
database (`.modelvc/audit/key`, made on first use, mode 0600; or the file named by
$MODELVC_AUDIT_KEY_FILE, e.g. a mounted secret). `audit verify` then checks, beyond the
chain itself, that every checkpoint's MAC holds and that the sealed entry still has the
sealed hash: an edited, removed or re-hashed entry at or before a checkpoint shows,
and so do sealed entries that were cut off the end.

What this does not cover (docs/security.md): entries after the newest checkpoint this
folder holds (written by a process elsewhere, with its own folder: give every writer
the same key file to make their checkpoints check out anywhere), and a writer who also
holds the key file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path

KEY_ENV = "MODELVC_AUDIT_KEY_FILE"


class AuditSeal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.checkpoints = folder / "checkpoints"
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def key_file(self) -> Path:
        return Path(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV) else self.folder / "key"

    def _load_key(self, create: bool) -> bytes | None:
        if self._key is not None:
            return self._key
        path = self.key_file
        if not path.exists():
            if not create:
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two processes making it at once agree on the first one's key
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
            except FileExistsError:
                pass
        text = path.read_text().strip()
        if not text:  # being written by the process that created it
            return None
        self._key = bytes.fromhex(text)
        return self._key

    def _mac(self, key: bytes, entry_id: int, digest: str) -> str:
        return hmac.new(key, f"{entry_id}:{digest}".encode(), hashlib.sha256).hexdigest()

    def seal(self, entry_id: int, digest: str) -> None:
        """Append the checkpoint of a committed head (one short O_APPEND write, so
        processes sharing the folder never interleave lines)."""
        with self._lock:
            key = self._load_key(create=True)
            if key is None:
                return
            line = json.dumps({"id": entry_id, "hash": digest,
                               "mac": self._mac(key, entry_id, digest)}) + "\n"
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.checkpoints, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def check(self, hashes: dict[int, str]) -> list[str]:
        """Problems with the checkpoints against the chain's entries (id -> hash)."""
        if not self.checkpoints.exists():
            return []
        key = self._load_key(create=False)
        if key is None:
            return [f"{self.checkpoints} exists but the audit key {self.key_file} does not: "
                    "the checkpoints cannot be checked"]
        problems: list[str] = []
        newest = max(hashes, default=0)
        for n, raw in enumerate(self.checkpoints.read_text().splitlines(), 1):
            try:
                cp = json.loads(raw)
                entry_id, digest, mac = int(cp["id"]), str(cp["hash"]), str(cp["mac"])
            except (ValueError, KeyError, TypeError):
                problems.append(f"audit checkpoint line {n} is malformed")
                continue
            if not hmac.compare_digest(mac, self._mac(key, entry_id, digest)):
                problems.append(f"audit checkpoint line {n} (entry {entry_id}) does not verify "
                                "with the audit key: it was altered, or sealed with another key")
            elif entry_id > newest or entry_id not in hashes:
                problems.append(f"entry {entry_id} was sealed but is gone from the database "
                                "(entries were removed)")
            elif hashes[entry_id] != digest:
                problems.append(f"entry {entry_id} (or one before it) changed after it was "
                                "sealed: the database was edited and the chain re-hashed")
        return problems
