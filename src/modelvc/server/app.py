"""create_app(): the FastAPI application with every router mounted."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import ModelvcError
from ..httpguard import BodyGuard
from .deps import least_checks
from .limits import cap_of, token_precheck
from .logs import ACCESS, LOG
from .openapi import document_errors
from .state import ServerConfig, ServerState


def create_app(config: ServerConfig) -> FastAPI:
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.registry()  # fail at start-up, not at the first request, if it cannot open
        LOG.info("started", extra={"registry": config.registry,
                                   "anonymous_read": config.anonymous_read})
        yield
        # Reached after uvicorn drained in-flight requests (SIGTERM/SIGINT).
        state.close()
        LOG.info("stopped")

    app = FastAPI(title="modelvc registry", version=__version__, lifespan=lifespan)
    app.state.modelvc = state

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A body that is not JSON fails before the route's `least` role check (deps.py)
        # ran: a caller the route refuses is refused, not told what the body lacks.
        try:
            for check in least_checks(request.scope.get("route")):
                await run_in_threadpool(check, request)
        except ModelvcError as refused:
            return JSONResponse({"error": refused.code, "message": refused.message,
                                 "hint": refused.hint}, status_code=refused.http_status)
        # FastAPI's own handler echoes the input, which fails to render for NaN (a 500);
        # the location and the reason are what a caller needs.
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                          for e in exc.errors()[:10])
        return JSONResponse({"error": "UsageError", "message": f"invalid request: {where}",
                             "hint": "see the API schema at /docs"}, status_code=422)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"error": "UsageError", "message": "the request is nested too "
                             "deeply", "hint": None}, status_code=400)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # A client stopped mid-request (Ctrl-C of a push): routine, and what it sent is
        # kept (the rerun resumes), so one info line, not an error with a traceback.
        LOG.info("client disconnected mid-request", extra={
            "method": request.method, "path": request.url.path})
        return Response(status_code=499)

    @app.exception_handler(ModelvcError)
    async def modelvc_error(request: Request, exc: ModelvcError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message, "hint": exc.hint},
                            status_code=exc.http_status)

    # Added before the access log, so that the log (outside it) records its refusals.
    app.add_middleware(BodyGuard, cap_of=cap_of(config), body_timeout=config.body_timeout,
                       precheck=token_precheck(state))

    @app.middleware("http")
    async def access_log(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-Id"] = rid
            return response
        finally:
            p = getattr(request.state, "principal", None)
            ACCESS.info("request", extra={
                "request_id": rid, "method": request.method, "path": request.url.path,
                "status": status, "ms": round((time.perf_counter() - t0) * 1000, 2),
                "principal": getattr(p, "name", None),
                "client": request.client.host if request.client else None})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: the metadata database and the object store answer."""
        try:
            await run_in_threadpool(state.check_ready)
        except Exception as exc:  # any failure means "do not route traffic here"
            LOG.warning("not ready", extra={"error": str(exc)})
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    # Routers are optional while they are being written; each owns its URL space:
    #   api.py      /api/v1/...            the Registry API (remote client speaks it)
    #   transfer.py /api/v1/objects/...    push/pull of objects and versions
    #   uploads.py  /api/v1/uploads/...    upload sessions (chunked, resumable) of both
    #   mlflow_api.py /api/2.0/mlflow/..., /ajax-api/2.0/mlflow/..., /api/2.0/mlflow-artifacts/
    #               MLflow clients (docs/mlflow.md)
    #   hf.py       /{repo}/resolve/..., /api/models/...   Hugging Face Hub clients
    for name in ("api", "transfer", "uploads", "mlflow_api", "hf"):
        try:
            module = __import__(f"modelvc.server.{name}", fromlist=["router"])
        except ModuleNotFoundError as exc:
            if exc.name != f"modelvc.server.{name}":
                raise
            continue
        app.include_router(module.router)
    try:  # the web UI needs the `ui` extra (Jinja2)
        from .ui import ui_app
    except ModuleNotFoundError as exc:
        if exc.name not in ("jinja2", "multipart", "python_multipart"):
            raise
    else:
        app.mount("/ui", ui_app(state))
    document_errors(app)
    return app
