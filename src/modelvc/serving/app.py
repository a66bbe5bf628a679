"""The ASGI app: Open Inference Protocol v2 REST routes, feedback, metrics, status."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ModelvcError
from ..httpguard import BodyGuard, oip_error_json
from . import oip
from .gateway import Gateway, NotReady, http_status
from .protocol import BadRequest
from .rest_infer import Front, InferEndpoint, inflate
from .runtimes.base import report_failure

log = logging.getLogger("modelvc.serving")
Handler = Callable[[Request], Awaitable[Response]]


def _error(exc: Exception) -> Response:
    msg = exc.message if isinstance(exc, ModelvcError) else str(exc)
    return JSONResponse({"error": msg}, status_code=http_status(exc))


def _guard(fn: Handler) -> Handler:
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except (BadRequest, NotReady, ModelvcError) as exc:
            return _error(exc)
        except Exception as exc:  # a model failure: 500 with the reason, never a crash
            msg = report_failure(log, f"{request.method} {request.url.path}", exc)
            return JSONResponse({"error": msg}, status_code=500)

    return handler


async def _body(request: Request, limit: int) -> bytes:
    """The body (its size is capped by the BodyGuard), decompressed to at most LIMIT."""
    return inflate(await request.body(), request.headers.get("content-encoding"), limit)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(f"{what} is nested too deeply") from exc


def build_app(gw: Gateway) -> Front:
    def inflated() -> int:  # read per request: build_app(None) lists the routes only
        return int(gw.cfg.max_decompressed_mb) << 20
    def version_of(request: Request) -> str | None:
        v = request.path_params.get("version")
        return str(v) if v is not None else None

    async def server_meta(_: Request) -> Response:
        return JSONResponse(oip.server_metadata())

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = gw.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @_guard
    async def model_meta(request: Request) -> Response:
        return JSONResponse(await oip.model_metadata(gw, request.path_params["name"],
                                                     version_of(request)))

    @_guard
    async def model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        ok = await oip.model_ready(gw, name, version_of(request))
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @_guard
    async def model_config(request: Request) -> Response:
        return JSONResponse(await oip.model_config(gw, request.path_params["name"],
                                                   version_of(request)))

    @_guard
    async def repository_index(request: Request) -> Response:
        raw = await _body(request, inflated())
        doc: Any = _json(raw, "repository index body") if raw.strip() else {}
        ready_only = bool(doc.get("ready")) if isinstance(doc, dict) else False
        return JSONResponse(oip.repository_index(gw, ready_only))

    @_guard
    async def stats(request: Request) -> Response:
        return JSONResponse(oip.statistics(gw, request.path_params.get("name"),
                                           version_of(request)))

    @_guard
    async def feedback(request: Request) -> Response:
        doc = _json(await _body(request, inflated()), "feedback body")
        return JSONResponse(gw.feedback(request.path_params["name"], doc))

    async def metrics(_: Request) -> Response:
        return Response(gw.metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @_guard
    async def status(request: Request) -> Response:
        # Bounded work on the loop (counts per time slot, not per request): a poll never
        # stalls inference. ?since=CLOCK (a `clock` of an earlier status) limits the
        # window statistics to slots that began at or after it: a trial's own requests.
        raw = request.query_params.get("since") or ""
        try:
            since = float(raw) if raw else None
        except ValueError as exc:
            raise BadRequest(f"since must be a number (a status `clock`), got {raw[:40]!r}"
                             ) from exc
        if since is not None and not (math.isfinite(since) and abs(since) <= 1e15):
            raise BadRequest(f"since must be a finite `clock` reading, got {raw[:40]!r}")
        return JSONResponse(gw.status(since))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gw.start()
        grpc_server = None
        try:
            if gw.cfg.grpc_port:
                from .oipgrpc.service import start_grpc

                grpc_server = await start_grpc(gw, gw.cfg.host, gw.cfg.grpc_port)
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=5)  # requests in flight finish
            await gw.stop()

    infer = InferEndpoint(gw)
    m, mv = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2", server_meta), Route("/v2/health/live", live),
        Route("/v2/models/stats", stats),  # before /v2/models/{name}
        Route("/v2/health/ready", ready),
        Route(m, model_meta), Route(mv, model_meta),
        Route(m + "/ready", model_ready), Route(mv + "/ready", model_ready),
        Route(m + "/infer", infer, methods=["POST"]),  # reached through Front
        Route(mv + "/infer", infer, methods=["POST"]),
        Route(m + "/feedback", feedback, methods=["POST"]),
        # Triton extensions: model configuration, repository index, statistics
        Route(m + "/config", model_config), Route(mv + "/config", model_config),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route(m + "/stats", stats), Route(mv + "/stats", stats),
        Route("/metrics", metrics), Route("/modelvc/status", status),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        # Every answer is JSON, unknown routes and methods included (OIP clients parse
        # the error body of any status).
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        what = "no such route" if code == 404 else \
            "method not allowed" if code == 405 else str(getattr(exc, "detail", exc))
        return JSONResponse({"error": f"{what}: {request.method} {request.url.path}"},
                            status_code=code)

    guard = Middleware(BodyGuard, cap_of=lambda method, path: gw.cfg.max_body_mb << 20,
                       body_timeout=lambda: gw.cfg.body_timeout, error_body=oip_error_json)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[guard],
                    exception_handlers={HTTPException: not_found})
    return Front(app, infer, app.routes)
