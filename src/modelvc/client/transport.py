"""One HTTP client of a modelvc server: base URL, bearer token, timeouts, and every
error answer raised as the modelvc error class the server sent (`error` in the body),
or, for answers without one (a proxy's, a balancer's), by HTTP status."""

from __future__ import annotations

import functools
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .. import errors
from ..errors import (
    NEVER_REACHED_HINT,
    RESUME_HINT,
    UNREACHABLE_RESUME_HINT,
    ModelvcError,
    StorageError,
)

TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0

# An answer without a modelvc error body: by status. 502-504 and 507 are the way there
# (a balancer, a proxy, a full disk), so they are storage errors the caller may retry.
BY_STATUS: dict[int, type[ModelvcError]] = {
    400: errors.UsageError, 401: errors.Unauthenticated, 403: errors.PermissionDenied,
    404: errors.NotFound, 409: errors.Conflict, 413: errors.UsageError,
    422: errors.UsageError, 502: StorageError, 503: StorageError, 504: StorageError,
    507: StorageError,
}


def error_code(resp: httpx.Response) -> str | None:
    """The modelvc error class name in an error answer's body, if there is one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def decode_error(resp: httpx.Response) -> ModelvcError:
    """The modelvc error an error answer carries, as the same class."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("error")
    cls = getattr(errors, code, None) if isinstance(code, str) else None
    if not (isinstance(cls, type) and issubclass(cls, ModelvcError)):
        cls = BY_STATUS.get(resp.status_code, ModelvcError)
    message = body.get("message") or body.get("detail") or (
        f"HTTP {resp.status_code}: {resp.text[:200]}" if resp.text else f"HTTP {resp.status_code}")
    hint = body.get("hint")
    return cls(str(message), hint=hint if isinstance(hint, str) else None)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client of the process, built on first use as httpx
    builds it (its CA bundle; SSL_CERT_FILE and SSL_CERT_DIR): httpx loads the CA bundle
    for each Client it makes (~20 ms of CPU), and a gateway, a fleet controller or a
    script opens many."""
    return httpx.create_ssl_context()


def _verify(url: str) -> ssl.SSLContext | bool:
    # A Transport talks only to its base URL (no redirects followed), so a plain-HTTP
    # server needs no TLS context at all.
    return _tls() if url.lower().startswith("https:") else False


class Transport:
    """Requests to the server at URL (thread-safe: httpx.Client is). Counts the bytes
    of request and response bodies it moved (`bytes_up`, `bytes_down`)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = TIMEOUT,
                 transport: httpx.BaseTransport | None = None, max_connections: int = 16,
                 unreachable_hint: str = "check the URL and that `modelvc server` runs there"
                 ) -> None:
        self.url = url.rstrip("/")
        token = token or os.environ.get("MODELVC_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.unreachable_hint = unreachable_hint
        self.bytes_up = 0
        self.bytes_down = 0
        self.answered = False  # the server has answered once (a transfer may have begun)
        self._count = threading.Lock()
        self._http = httpx.Client(base_url=self.url, headers=headers, transport=transport,
                                  verify=_verify(self.url),
                                  timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                                  limits=httpx.Limits(max_connections=max_connections))

    def close(self) -> None:
        self._http.close()

    def count(self, up: int = 0, down: int = 0) -> None:
        with self._count:
            self.bytes_up += up
            self.bytes_down += down

    def unreachable(self, exc: Exception, hint: str | None = None) -> StorageError:
        said = hint or self.unreachable_hint
        if not self.answered and isinstance(exc, httpx.ConnectError):
            said = NEVER_REACHED_HINT  # nothing arrived to resume from
        return StorageError(f"cannot reach the registry server {self.url}: {exc}",
                            hint=said, resumable=said in (RESUME_HINT, UNREACHABLE_RESUME_HINT))

    def request(self, method: str, path: str, *, hint: str | None = None, check: bool = True,
                **kw: Any) -> httpx.Response:
        """The answer; an error answer raised as its modelvc error unless not CHECK
        (`hint`: what to do when the server cannot be reached)."""
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc, hint) from exc
        self.answered = True
        if check and resp.status_code >= 400:
            raise decode_error(resp)
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    @contextmanager
    def stream(self, method: str, path: str, *, hint: str | None = None, **kw: Any
               ) -> Iterator[httpx.Response]:
        """A streamed answer (its body read as it comes); errors raised as `request`."""
        try:
            with self._http.stream(method, path, **kw) as resp:
                self.answered = True
                if resp.status_code >= 400:
                    resp.read()
                    raise decode_error(resp)
                yield resp
        except httpx.HTTPError as exc:
            raise self.unreachable(exc, hint) from exc
