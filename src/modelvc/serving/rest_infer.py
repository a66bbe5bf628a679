"""POST /v2/models/{name}[/versions/{version}]/infer as a raw ASGI endpoint, and the
front router that sends those requests straight to it.

Inference is the route that carries the load, so it skips what every other route goes
through: Starlette's router (a regex per route, tried in order), its Request/Response
objects and the BodyGuard middleware's per-message wrappers. What those gave it is done
here, with the same answers: the body cap on the declared and on the received length
(413), the idle-body timeout (408), a bad Content-Length (400), each with the
BodyGuard's JSON and `connection: close`; gzip/deflate bodies inflated to at most
max_decompressed_mb; OIP errors as {"error": ...} with the status of the exception.
Every other request (and lifespan) goes to the Starlette app unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Iterable
from typing import Any

from ..errors import BodyTimeout, ModelvcError, TooLarge, UsageError
from ..httpguard import ASGIApp, Receive, Scope, Send, oip_error_json, too_large
from .gateway import EPOCH_HEADER, VERSION_HEADER, Gateway, NotReady, http_status
from .protocol import HEADER_LENGTH, BadRequest, encode_response, parse_infer
from .runtimes.base import report_failure

log = logging.getLogger("modelvc.serving")
KEY_HEADER = "x-request-key"  # a caller's sticky canary key
_PREFIX, _SUFFIX = "/v2/models/", "/infer"
_WANTED = {b"content-length", b"content-encoding", HEADER_LENGTH.encode(),
           KEY_HEADER.encode(), EPOCH_HEADER.encode()}
_VERSION_H, _EPOCH_H = VERSION_HEADER.encode(), EPOCH_HEADER.encode()
_KEY_H, _HEADER_LENGTH = KEY_HEADER.encode(), HEADER_LENGTH.encode()
_JSON_TYPE = (b"content-type", b"application/json")
Headers = list[tuple[bytes, bytes]]
Response = tuple[int, bytes, Headers]  # status, body, headers (content-length aside)


def wanted_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The headers the infer route reads: the first of each, as Starlette's headers.get."""
    h: dict[bytes, bytes] = {}
    for k, v in headers:
        if k in _WANTED and k not in h:
            h[k] = v
    return h


def declared_length(h: dict[bytes, bytes], cap: int) -> int | None:
    """The declared body length (None: not declared); the refusal to send (and close the
    connection after) when it is no byte count or over CAP."""
    raw = h.get(b"content-length")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    if not text.isdigit() or len(text) > 19:
        raise UsageError(f"Content-Length {text[:40]!r} is not a byte count")
    declared = int(text)
    if declared > cap:
        raise too_large(cap)
    return declared


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(name, version) when PATH is an infer route, as Starlette's `{name}` (one
    non-empty segment) would match it; else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX):-len(_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def inflate(body: bytes, enc: str | None, limit: int) -> bytes:
    """BODY decoded per its Content-Encoding, to at most LIMIT bytes: a small gzip of
    zeros must not inflate into gigabytes."""
    if enc in ("gzip", "deflate"):
        d = zlib.decompressobj(31 if enc == "gzip" else 15)
        try:
            out = d.decompress(body, limit + 1)
            if len(out) > limit or d.unconsumed_tail:
                raise TooLarge(f"the {enc} body inflates to more than {limit >> 20} MiB",
                               hint="send it uncompressed, or raise max_decompressed_mb")
            if not d.eof:
                raise BadRequest(f"body is not valid {enc}: it ends early")
        except zlib.error as exc:
            raise BadRequest(f"body is not valid {enc}: {exc}") from exc
        return out
    if enc not in (None, "identity"):
        raise BadRequest(f"Content-Encoding {enc!r} is not supported (gzip, deflate)")
    return body


def epoch_of(raw: str) -> int | None:
    """X-Modelvc-Epoch: the newest epoch the caller saw (a count that fits int64)."""
    if not raw:
        return None
    if not (raw.isdigit() and len(raw) <= 18):
        raise BadRequest(f"{EPOCH_HEADER} must be an epoch this gateway sent (a count), "
                         f"got {raw[:40]!r}")
    return int(raw)


def dumps(doc: Any) -> bytes:
    """As Starlette's JSONResponse renders it."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


async def _answer(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, exc: ModelvcError) -> None:
    """The BodyGuard's answer to a body it will not read (the connection closes)."""
    await _answer(send, exc.http_status, oip_error_json(exc),
                  [_JSON_TYPE, (b"connection", b"close")])


class InferEndpoint:
    """The infer route; as a Starlette route's endpoint it reads `path_params`."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pp = scope.get("path_params") or {}
        version = pp.get("version")
        await self.serve(scope, receive, send, str(pp["name"]),
                         str(version) if version is not None else None)

    async def serve(self, scope: Scope, receive: Receive, send: Send, name: str,
                    selector: str | None) -> None:
        h = wanted_headers(scope["headers"])
        cap = self.gw.cfg.max_body_mb << 20
        try:
            declared = declared_length(h, cap)
        except ModelvcError as exc:
            await _refuse(send, exc)
            return
        body = b""
        if declared != 0:
            got = await self._read(receive, cap, send)
            if got is None:
                return
            body = got
        await _answer(send, *await self.respond(name, selector, body, h, scope.get("path")))

    async def respond(self, name: str, selector: str | None, body: bytes,
                      h: dict[bytes, bytes], path: object = None) -> Response:
        """The answer to one infer request (its body read whole): status, body, headers
        (content-length aside). Every failure is an answer, never an exception."""
        try:
            return await self._infer(name, selector, body, h)
        except (BadRequest, NotReady, ModelvcError) as exc:
            msg = exc.message if isinstance(exc, ModelvcError) else str(exc)
            return http_status(exc), dumps({"error": msg}), [_JSON_TYPE]
        except Exception as exc:  # a model failure: 500 with the reason, never a crash
            return 500, dumps({"error": report_failure(log, f"POST {path}", exc)}), \
                [_JSON_TYPE]

    async def _read(self, receive: Receive, cap: int, send: Send) -> bytes | None:
        """The body, or None when it was refused (answered) or the caller left."""
        wait = self.gw.cfg.body_timeout
        chunks: list[bytes] = []
        received, more = 0, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait) as tm:
                while more:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        return None  # disconnected
                    chunk = msg.get("body", b"")
                    received += len(chunk)
                    if received > cap:
                        await _refuse(send, too_large(cap))
                        return None
                    chunks.append(chunk)
                    more = msg.get("more_body", False)
                    if more:  # the timeout is per byte that does not come, not per body
                        tm.reschedule(loop.time() + wait)
        except TimeoutError:
            await _refuse(send, BodyTimeout(f"no byte of the request body arrived for "
                                            f"{wait:g} s", hint="send the whole body"))
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _infer(self, name: str, selector: str | None, body: bytes,
                     h: dict[bytes, bytes]) -> Response:
        gw = self.gw
        enc = h.get(b"content-encoding")
        hl = h.get(_HEADER_LENGTH)
        try:
            req = parse_infer(
                inflate(body, enc.decode("latin-1") if enc is not None else None,
                        int(gw.cfg.max_decompressed_mb) << 20),
                hl.decode("latin-1") if hl is not None else None)
        except BadRequest as exc:
            gw.refused(name, selector, exc)
            raise
        raw_key = h.get(_KEY_H)
        key: Any = raw_key.decode("latin-1") if raw_key else req.parameters.get("request_key")
        seen = h.get(_EPOCH_H)
        ans = await gw.infer(name, selector, req, str(key) if key is not None else None,
                             epoch_of(seen.decode("latin-1") if seen is not None else ""))
        out, headers = encode_response(req, ans)
        return 200, out, [*((k.encode(), v.encode()) for k, v in headers.items()),
                          (_VERSION_H, ans.version.encode()),
                          (_EPOCH_H, str(ans.epoch).encode())]


class Front:
    """The gateway's ASGI app: infer requests to the endpoint, the rest to Starlette."""

    def __init__(self, app: ASGIApp, endpoint: InferEndpoint, routes: list[Any]) -> None:
        self.app, self.endpoint, self.routes = app, endpoint, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = infer_target(scope["path"])
            if target is not None:
                await self.endpoint.serve(scope, receive, send, *target)
                return
        await self.app(scope, receive, send)
