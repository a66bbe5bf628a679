"""The server UI's session cookie: never the API token itself.

The cookie is `SHA256(token).EXPIRES.NONCE.MAC`, the MAC an HMAC-SHA256 under a key
kept beside the registry (`.modelvc/ui/session-key`, made on first use, mode 0600; or
the file $MODELVC_UI_SESSION_KEY_FILE names, for servers on several hosts). It names
the token by the hash the database stores, which the API does not accept, so a leaked
cookie is no API credential; it ends at EXPIRES (SESSION_SECONDS after login) and with
the token (every request looks the token up again: revoked or expired, the session is
gone). Server processes sharing the key agree on sessions without shared state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

KEY_ENV = "MODELVC_UI_SESSION_KEY_FILE"
SESSION_SECONDS = 12 * 3600


def load_key(registry_folder: str | Path) -> bytes:
    path = (Path(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV)
            else Path(registry_folder) / "ui" / "session-key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: processes starting together agree on the first one's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass
    for _ in range(100):  # another process may be writing it this instant
        text = path.read_text().strip()
        if text:
            return bytes.fromhex(text)
        time.sleep(0.01)
    raise RuntimeError(f"the UI session key file {path} is empty: delete it and restart")


class Sessions:
    def __init__(self, key: bytes, *, seconds: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.seconds = seconds
        self.clock = clock

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, b"modelvc-ui-session:" + body.encode(),
                        hashlib.sha256).hexdigest()

    def issue(self, token_hash: str) -> str:
        body = f"{token_hash}.{int(self.clock() + self.seconds)}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body)}"

    def token_hash(self, cookie: str) -> str | None:
        """The token hash a cookie names, if its MAC holds and it has not expired."""
        parts = cookie.split(".")
        if len(parts) != 4:
            return None
        body, mac = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(self._mac(body), mac):
            return None
        try:
            expires = int(parts[1])
        except ValueError:
            return None
        return parts[0] if self.clock() < expires else None
