"""The gateway's HTTP protocol: uvicorn's httptools protocol (with the head deadline of
modelvc.httpproto) that answers infer requests itself, without ASGI.

Under uvicorn every request costs a task, a RequestResponseCycle, an asyncio.Event, a
scope dict, receive/send message dicts and two socket writes: about half the CPU of an
infer request once the route itself is lean. Here an infer request (POST
/v2/models/NAME[/versions/V]/infer, arriving while its connection has nothing else in
flight) is collected by the parser callbacks and answered from `on_message_complete`:
InferEndpoint.respond runs as a coroutine driven by hand, and when it completes
without suspending (a short model call on the loop: the usual case) its answer is
written at once, head and body in one write. When it does suspend (inference in a
thread, a version loading, a fleet catch-up), a task takes it over from there.

The guards are the ASGI route's (rest_infer.InferEndpoint.serve), with the same answers:
the body cap on the declared and on the received length (413), the idle-body timeout
(408), a bad Content-Length (400), each with `connection: close`; inflation caps, auth
and epoch headers, metrics are in `respond`, shared by both. Anything else (other
routes, Expect: 100-continue, upgrades, a percent-encoded or query-carrying target,
HTTP/1.0 or `connection: close`, a request pipelined behind one in flight) takes
uvicorn's path unchanged; a request pipelined behind a fast one waits in uvicorn's
pipeline until the fast answer is written.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Coroutine, Generator
from typing import Any

from ..errors import BodyTimeout, ModelvcError
from ..httpguard import oip_error_json, too_large
from .rest_infer import InferEndpoint, Response, declared_length, infer_target, wanted_headers

_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}
_CLOSE = [(b"content-type", b"application/json"), (b"connection", b"close")]


class _Busy:
    """Stands in as uvicorn's current cycle while a fast answer is pending, so that a
    request pipelined behind it is queued (uvicorn's pipeline) rather than started."""

    response_complete = False
    disconnected = False
    keep_alive = True

    class message_event:  # uvicorn calls .set() on connection loss
        @staticmethod
        def set() -> None:
            return None


class _Resume:
    """Awaitable that carries on a coroutine which already ran up to its first
    suspension (it yielded `fut`), so a Task can take it over from there."""

    __slots__ = ("coro", "fut")

    def __init__(self, coro: Coroutine[Any, Any, Response], fut: Any) -> None:
        self.coro, self.fut = coro, fut

    def __await__(self) -> Generator[Any, None, Response]:
        coro, fut = self.coro, self.fut
        while True:
            try:
                yield fut
            except BaseException as exc:  # cancelled: into the coroutine, as a Task would
                try:
                    fut = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    fut = coro.send(None)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


async def _finish(r: _Resume) -> Response:
    return await r


class _FastRequest:
    __slots__ = ("chunks", "h", "name", "progressed", "received", "selector")

    def __init__(self, name: str, selector: str | None, h: dict[bytes, bytes]) -> None:
        self.name, self.selector, self.h = name, selector, h
        self.chunks: list[bytes] = []
        self.received = 0
        self.progressed = True


def infer_protocol(base: type[asyncio.Protocol], endpoint: InferEndpoint
                   ) -> type[asyncio.Protocol]:
    """`base` (modelvc.httpproto's httptools protocol class) answering infer requests
    through `endpoint` itself."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    begin = HttpToolsProtocol.on_message_begin
    gw = endpoint.gw

    class InferProtocol(base):  # type: ignore[valid-type,misc]
        _fast: _FastRequest | None = None
        _pending: asyncio.Task[Response] | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _scoped = False
        headers: list[tuple[bytes, bytes]]
        cycle: Any  # uvicorn's RequestResponseCycle, or _Busy

        def on_message_begin(self) -> None:
            # the scope dict (and its copy of the app state) only for uvicorn's path
            self.url, self.expect_100_continue, self.headers = b"", False, []
            self._scoped = False

        def _scope(self) -> None:
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            begin(self)
            self.url, self.expect_100_continue = url, expect
            self.headers.extend(headers)  # the scope holds this list
            self._scoped = True

        def on_headers_complete(self) -> None:
            url = self.url
            if (self.parser.get_method() == b"POST" and self._pending is None
                    and not self.expect_100_continue and not self.pipeline
                    and (self.cycle is None or self.cycle.response_complete)
                    and b"?" not in url and b"%" not in url
                    and self.parser.should_keep_alive()
                    and self.parser.get_http_version() == "1.1"
                    and not self.parser.should_upgrade()):
                target = infer_target(url.decode("latin-1"))
                if target is not None:
                    self._disarm_head()
                    self._start(*target)
                    return
            self._scope()
            super().on_headers_complete()

        def _start(self, name: str, selector: str | None) -> None:
            h = wanted_headers(self.headers)
            try:
                declared = declared_length(h, gw.cfg.max_body_mb << 20)
            except ModelvcError as exc:
                self._refuse(exc)
                return
            self._fast = _FastRequest(name, selector, h)
            if declared == 0:
                self._fast.progressed = False

        def on_body(self, body: bytes) -> None:
            f = self._fast
            if f is None:
                if self._scoped:
                    super().on_body(body)
                return  # the rest of a refused body: the connection is closing
            f.received += len(body)
            cap = gw.cfg.max_body_mb << 20
            if f.received > cap:
                self._refuse(too_large(cap))
                return
            f.chunks.append(body)
            f.progressed = True

        def on_message_complete(self) -> None:
            f = self._fast
            if f is None:
                if self._scoped:
                    super().on_message_complete()
                return
            self._fast = None
            self._stop_body_timer()
            chunks = f.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            coro = endpoint.respond(f.name, f.selector, body, f.h, self.url)
            try:
                fut = coro.send(None)
            except StopIteration as stop:
                self._write(stop.value)
                return
            # It waits on something (a thread, a load): a task carries it on.
            prev, self.cycle = self.cycle, _Busy()
            task = self.loop.create_task(_finish(_Resume(coro, fut)))
            self._pending = task
            self.tasks.add(task)

            def done(t: asyncio.Task[Response]) -> None:
                self.tasks.discard(t)
                self._pending = None
                busy = self.cycle
                if isinstance(busy, _Busy):
                    self.cycle = prev  # nothing arrived meanwhile
                if t.cancelled():
                    self.transport.close()
                    return
                exc = t.exception()
                if exc is not None:  # respond() answers every Exception: a BaseException
                    self.transport.close()
                    return
                keep = not isinstance(busy, _Busy) or busy.keep_alive
                self._write(t.result(), close=not keep)

            task.add_done_callback(done)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            f = self._fast
            if f is not None and f.progressed:  # a body still to come: its idle deadline
                f.progressed = False
                self._stop_body_timer()
                self._body_timer = self.loop.call_later(gw.cfg.body_timeout, self._idle)

        def _idle(self) -> None:
            self._body_timer = None
            f = self._fast
            if f is None:
                return
            if f.progressed:  # bytes came meanwhile: wait again
                f.progressed = False
                self._body_timer = self.loop.call_later(gw.cfg.body_timeout, self._idle)
                return
            wait = gw.cfg.body_timeout
            self._refuse(BodyTimeout(f"no byte of the request body arrived for {wait:g} s",
                                     hint="send the whole body"))

        def _stop_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _refuse(self, exc: ModelvcError) -> None:
            """The BodyGuard's answer to a body it will not read; the connection closes."""
            self._fast = None
            self._stop_body_timer()
            self._write((exc.http_status, oip_error_json(exc), _CLOSE), close=True)

        def _write(self, answer: Response, close: bool = False) -> None:
            status, body, headers = answer
            t = self.transport
            if t.is_closing():
                return
            head = [_STATUS.get(status) or f"HTTP/1.1 {status} \r\n".encode()]
            for k, v in (*self.server_state.default_headers, *headers):
                head += (k, b": ", v, b"\r\n")
            head += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
            t.write(b"".join(head))
            if close:
                t.close()
                return
            self.on_response_complete()  # keep-alive timer, head deadline, pipeline

        def connection_lost(self, exc: Exception | None) -> None:
            self._fast = None
            self._stop_body_timer()
            super().connection_lost(exc)

    return InferProtocol
