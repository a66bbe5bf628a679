"""What a request body may cost the registry server: a cap per route (from the config),
and the token checked before any body is read (modelvc.httpguard does the bounding).

Routes that carry bulk bytes stream them (to a spool or temp file) and get their own
caps; every other body is JSON the framework parses whole, so it gets `max_body_mb`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import CorruptObject, DamagedUpload, ModelvcError
from ..httpguard import CapOf, Precheck, Scope
from ..wire.frames import MAX_REQUEST
from .auth import authenticate
from .state import ServerConfig, ServerState

MB = 1 << 20
UI_PREFIX = "/ui/"  # server/ui.py, mounted by app.py
# (method, path pattern) -> the cap in bytes, from the config; first match wins.
_ROUTES: list[tuple[str, re.Pattern[str], Callable[[ServerConfig], int]]] = [
    ("PUT", re.compile(r"/api/v1/models/[^/]+/uploads/[^/]+"),
     lambda c: c.max_upload_mb * MB),  # one raw segment, spooled to disk
    ("PUT", re.compile(r"/api/v1/objects/[^/]+"), lambda c: c.max_upload_mb * MB),
    ("PUT", re.compile(r"/api/v1/uploads/[^/]+"), lambda c: MAX_REQUEST),  # server/uploads.py
    ("POST", re.compile(r"/api/v1/objects/pack"), lambda c: 64 * MB),  # transfer.MAX_PACK
    ("POST", re.compile(r"/api/v1/models/[^/]+/commits"), lambda c: c.max_commit_mb * MB),
    # files inline, base64, parsed whole (what parsing costs is a few times the cap:
    # tests/campaign/test_memory.py), so a cap of its own, well below a HF commit's
    ("POST", re.compile(r"/api/v1/models/[^/]+/amend"), lambda c: c.max_amend_mb * MB),
    ("PUT", re.compile(r"/api/2.0/mlflow-artifacts/artifacts/.+"),  # one file, streamed
     lambda c: c.max_upload_mb * MB),
    ("POST", re.compile(r"/api/models/.+/commit/[^/]+"),  # HF: files inline, base64
     lambda c: c.max_hf_commit_mb * MB),
]


def cap_of(config: ServerConfig) -> CapOf:
    def cap(method: str, path: str) -> int:
        for m, pattern, limit in _ROUTES:
            if m == method and pattern.fullmatch(path):
                return limit(config)
        return config.max_body_mb * MB

    return cap


def token_precheck(state: ServerState) -> Precheck:
    """Authenticate from the headers alone (401 for a missing, unknown, expired or
    revoked token unless anonymous reads are on). The principal is kept on the request,
    so the route's own authentication does not query again."""

    async def check(scope: Scope) -> ModelvcError | None:
        if scope.get("path", "").startswith(UI_PREFIX):
            # The web UI authenticates by its session cookie, and its login form carries
            # the token in the body: its (small, capped) bodies are read first.
            return None
        try:
            await run_in_threadpool(authenticate, Request(scope), state)
        except ModelvcError as exc:
            return exc
        return None

    return check


@contextmanager
def sent_bytes() -> Iterator[None]:
    """Around checks of bytes the client sent: their CorruptObject is the client's
    (DamagedUpload, 400), not the server's 500 (which means stored data is damaged)."""
    try:
        yield
    except CorruptObject as exc:
        if exc.http_status < 500:  # already a client error (ChunkRefused, DamagedUpload)
            raise
        raise DamagedUpload(exc.message, hint=exc.hint) from exc
