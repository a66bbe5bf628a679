"""An ASGI middleware that bounds what a request body may cost, for the registry server
and the gateway alike.

- Size: each request has a cap (the server's differ per route). A Content-Length over
  it is answered 413 before a byte is read; a body that grows past it (chunked, or
  lying about its length) is cut off at the cap and answered 413.
- Time: a body that stops arriving (a Content-Length never fulfilled, a client that
  sends a byte a minute) is answered 408 after `body_timeout` seconds without a byte.
- A precheck (the server: is the token valid?) runs before the body is read, so a
  caller who may not write never makes the server read (or buffer) what it sent.
- Response header values are made safe for HTTP/1.1: a control character from an
  echoed path (a NUL) would otherwise make h11 drop the connection instead of answering.

Whatever the application does when the body is refused (FastAPI turns a failed body
read into its own 400), the refusal's own status and JSON error are what is sent.
After such an answer uvicorn closes the connection, leaving the rest of the body unread.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import BodyTimeout, ModelvcError, TooLarge, UsageError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# The body cap in bytes of a request (method, path).
CapOf = Callable[[str, str], int]
Precheck = Callable[[Scope], Awaitable[ModelvcError | None]]

_UNSAFE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class _Refused(Exception):
    """Raised into the application when its body is refused (it unwinds the handler)."""


def error_json(exc: ModelvcError) -> bytes:
    return json.dumps({"error": exc.code, "message": exc.message, "hint": exc.hint}).encode()


def oip_error_json(exc: ModelvcError) -> bytes:
    """The Open Inference Protocol's error body, {"error": "<message>"} (a gateway's)."""
    return json.dumps({"error": exc.message}).encode()


def safe_header(value: bytes) -> bytes:
    """A header value h11 will send: control characters as '?'."""
    return _UNSAFE.sub(b"?", value)


def content_length(scope: Scope) -> int | None:
    """The declared length; UsageError if it is not a number (uvicorn passes it on)."""
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            text = v.decode("latin-1").strip()
            if not text.isdigit() or len(text) > 19:
                raise UsageError(f"Content-Length {text[:40]!r} is not a byte count")
            return int(text)
    return None


class BodyGuard:
    """Wrap an ASGI app: per-request body caps, an idle-body timeout, a precheck before
    the body, safe response headers."""

    def __init__(self, app: ASGIApp, *, cap_of: CapOf,
                 body_timeout: float | Callable[[], float],
                 precheck: Precheck | None = None,
                 error_body: Callable[[ModelvcError], bytes] = error_json) -> None:
        # A callable is read when the first request comes (the gateway's config).
        self.app, self.cap_of, self.precheck = app, cap_of, precheck
        self.error_body = error_body
        self._timeout = body_timeout
        if not callable(body_timeout):
            _ = self.timeout  # a bad number fails at start-up

    @property
    def timeout(self) -> float:
        t = self._timeout() if callable(self._timeout) else self._timeout
        if not (t > 0 and math.isfinite(t)):
            raise UsageError(f"body_timeout must be a positive number, not {t}")
        return t

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        refused: ModelvcError | None = None

        async def answer(exc: ModelvcError) -> None:
            nonlocal started
            started = True
            body = self.error_body(exc)
            await send({"type": "http.response.start", "status": exc.http_status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})

        try:
            declared = content_length(scope)
        except UsageError as exc:
            await answer(exc)
            return
        if self.precheck is not None and _has_body(scope, declared):
            problem = await self.precheck(scope)
            if problem is not None:
                await answer(problem)
                return
        cap = self.cap_of(scope["method"], scope.get("path", ""))
        if declared is not None and declared > cap:
            await answer(too_large(cap))
            return
        received = 0
        done = declared == 0

        async def guarded_receive() -> Message:
            nonlocal received, done, refused
            if refused is not None:
                raise _Refused()
            if done:  # the body is in: what remains is waiting for a disconnect
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                refused = BodyTimeout(f"no byte of the request body arrived for "
                                      f"{self.timeout:g} s", hint="send the whole body")
                raise _Refused() from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > cap:
                    refused = too_large(cap)
                    raise _Refused()
                done = not msg.get("more_body", False)
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused is not None:  # the app's own answer to the refusal is replaced
                if not started:
                    await answer(refused)
                return
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = [(k, safe_header(v)) for k, v in msg.get("headers", ())]
            await send(msg)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await answer(refused)


def _has_body(scope: Scope, declared: int | None) -> bool:
    if declared is not None:
        return declared > 0
    return any(k == b"transfer-encoding" for k, _ in scope.get("headers", ()))


def too_large(cap: int) -> TooLarge:
    size = f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap} bytes"
    return TooLarge(f"the request body is larger than this route accepts ({size})",
                    hint="send less per request, or raise the limit in the server's config")
