"""The UI's Starlette application: routes, sessions, CSRF, rendering.

Mounted at /ui (by `modelvc ui` and by `modelvc server`); links are built from the
mount's root_path. Registry calls block, so handlers run them in the thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ModelvcError, NotFound, PermissionDenied, UsageError
from . import actions, govern, pages
from .access import COOKIE, ROLES, Access, Viewer, csrf_ok
from .views import SORTS, SummaryCache, human_bytes, model_list

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
FORM_BYTES = 64 << 10
POLL_S = 2  # the Deployments page refreshes its table this often
PRE = "modelvc_ui_login"  # double-submit cookie for the login form
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _ago(t: datetime | None, now: datetime) -> str:
    """How long before NOW, for a person scanning a table ("3 min ago")."""
    if t is None:
        return "-"
    s = (now - t).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return "just now" if s < 10 else f"{int(s)} s ago"


def _short(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "-" if x is None else str(x)


def environment() -> Environment:
    env = Environment(loader=PackageLoader("modelvc.ui", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(bytes=human_bytes, when=_when, short=_short, ago=_ago,
                       q=lambda s: quote(str(s), safe=""))
    return env


class UI:
    def __init__(self, access: Access, *, title: str = "modelvc") -> None:
        self.access = access
        self.title = title
        self.env = environment()
        self.summaries = SummaryCache()
        # An action's "Done: ..." notice travels in the URL it redirects to; signed, so a
        # link made elsewhere cannot show a status nobody's action produced.
        self._notice_key = secrets.token_bytes(32)

    def _notice_mac(self, text: str) -> str:
        return hmac.new(self._notice_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def signed(self, where: str) -> str:
        """WHERE with its `done` notice signed (`ds`)."""
        parts = urlsplit(where)
        query = parse_qsl(parts.query, keep_blank_values=True)
        done = dict(query).get("done")
        if done is None:
            return where
        query.append(("ds", self._notice_mac(done)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def notice(self, request: Request) -> str | None:
        done = request.query_params.get("done")
        mac = request.query_params.get("ds", "")
        if done and hmac.compare_digest(mac, self._notice_mac(done)):
            return done
        return None

    # ---- plumbing
    def render(self, request: Request, template: str, ctx: dict[str, Any], *,
               status: int = 200, viewer: Viewer | None = None) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        html = self.env.get_template(template).render(
            base=base, viewer=viewer, title=self.title, request=request,
            notice=self.notice(request),
            can=lambda role, model=None: viewer is not None and self.access.can(
                viewer, role, model), urlencode=urlencode, roles=ROLES,
            whole_audit=viewer is not None and self.access.may_see_all_audit(viewer), **ctx)
        resp = HTMLResponse(html, status_code=status)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def error(self, request: Request, exc: ModelvcError, viewer: Viewer | None, *,
              back: str | None = None) -> HTMLResponse:
        """The error page; BACK (an action's refusal): the page its form was on."""
        return self.render(request, "error.html", {"error": exc, "back": back,
                                                   "acted": request.method == "POST"},
                           status=exc.http_status, viewer=viewer)

    def page(self, template: str, build: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
        """A GET handler: session check, BUILD(reg, request, viewer) in a thread, render."""

        async def handler(request: Request) -> Response:
            viewer = self.access.viewer(request.cookies.get(COOKIE))
            if viewer is None:
                return self.to_login(request)
            try:
                reg = self.access.registry(viewer)
                ctx = await run_in_threadpool(build, reg, request, viewer)
            except ModelvcError as exc:
                return self.error(request, exc, viewer)
            if "redirect" in ctx:  # e.g. /v/production: the version's own page
                return RedirectResponse(request.scope.get("root_path", "") + ctx["redirect"],
                                        status_code=302)
            try:
                return self.render(request, template, ctx, viewer=viewer)
            except Exception:  # a page bug: the styled page, the traceback in the log
                log.exception("rendering %s failed", request.url.path)
                return self.error(request, ModelvcError(
                    f"this page failed to render ({request.url.path})",
                    hint="the server's log has the traceback; other pages still work"),
                    viewer)

        return handler

    def to_login(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{base}/login?{urlencode({'next': nxt})}", status_code=303)

    def action(self, run: actions.Action) -> Callable[..., Any]:
        """A POST handler: session, CSRF, RUN(reg, viewer, form, summaries) -> where to go."""

        async def handler(request: Request) -> Response:
            viewer = self.access.viewer(request.cookies.get(COOKIE))
            if viewer is None:
                return self.error(request, PermissionDenied(
                    "not logged in", hint=self.access.login_hint), None)
            try:
                form = await read_form(request)
            except UsageError as exc:
                return self.error(request, exc, viewer)
            if not csrf_ok(viewer.session, form.get("_csrf", "") or
                           request.headers.get("x-csrf-token")):
                return self.error(request, PermissionDenied(
                    "the form's CSRF token is missing or wrong; nothing was changed",
                    hint="reload the page and submit it again"), viewer)
            base = request.scope.get("root_path", "")
            try:
                reg = self.access.registry(viewer)
                where = await run_in_threadpool(run, reg, viewer, form, self.summaries)
            except ModelvcError as exc:
                return self.error(request, exc, viewer, back=base + actions.back(form))
            return RedirectResponse(base + self.signed(where), status_code=303)

        return handler

    # ---- login
    async def login(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        nxt = request.query_params.get("next") or "/"
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        if request.method == "GET" and "key" in request.query_params:  # `modelvc ui` URL
            session = self.access.login(request.query_params["key"])
            if session is None:
                return self.error(request, PermissionDenied(
                    "this UI key is not valid (each `modelvc ui` run makes a new one)",
                    hint=self.access.login_hint), None)
            return self.logged_in(request, session, base + "/")
        if request.method == "POST":
            try:
                form = await read_form(request)
            except UsageError as exc:
                return self.error(request, exc, None)
            pre = request.cookies.get(PRE, "")
            if not pre or not secrets.compare_digest(pre, str(form.get("_login", ""))):
                return self.error(request, PermissionDenied(
                    "the login form expired; nothing was sent", hint="load the page again"),
                    None)
            session = await run_in_threadpool(self.access.login, str(form.get("token", "")))
            if session is None:
                return self._login_form(request, nxt, "that token is not valid here", 401)
            target = nxt if nxt.startswith(base + "/") else base + nxt
            return self.logged_in(request, session, target)
        return self._login_form(request, nxt, "", 200)

    def _login_form(self, request: Request, nxt: str, message: str, status: int) -> Response:
        pre = secrets.token_urlsafe(24)
        resp = self.render(request, "login.html", {"next": nxt, "message": message,
                                                    "pre": pre, "hint": self.access.login_hint,
                                                    "label": self.access.login_label},
                           status=status)
        resp.set_cookie(PRE, pre, httponly=True, samesite="strict",
                        path=request.scope.get("root_path", "") or "/",
                        secure=request.url.scheme == "https")
        return resp

    def logged_in(self, request: Request, session: str, target: str) -> Response:
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, session, httponly=True, samesite="strict",
                        path=request.scope.get("root_path", "") or "/",
                        secure=request.url.scheme == "https")
        return resp

    async def logout(self, request: Request) -> Response:
        viewer = self.access.viewer(request.cookies.get(COOKIE))
        try:
            form = await read_form(request)
        except UsageError as exc:
            return self.error(request, exc, viewer)
        if viewer is not None and not csrf_ok(viewer.session, form.get("_csrf", "")):
            return self.error(request, PermissionDenied("missing CSRF token"), viewer)
        base = request.scope.get("root_path", "")
        resp = RedirectResponse(base + "/login", status_code=303)
        resp.delete_cookie(COOKIE, path=base or "/")
        return resp

    # ---- pages
    def models(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        qp = request.query_params
        sort = qp.get("sort", "name")
        sort = sort if sort in SORTS else "name"
        order = qp.get("order") or ("desc" if qp.get("desc") == "1" else "")
        # Names A to Z; everything else newest / largest first unless asked otherwise.
        desc = order == "desc" if order in ("asc", "desc") else sort != "name"
        listing = model_list(reg, self.summaries, q=qp.get("q", ""), sort=sort, desc=desc,
                             page=_int(qp.get("page"), 1))
        return {"list": listing, "sorts": SORTS}

    def model(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        qp = request.query_params
        return pages.model_page(
            reg, self.summaries.versions, request.scope.get("root_path", ""),
            request.path_params["model"],
            n=_int(qp.get("n"), pages.GRAPH_DEFAULT),
            before=_int(qp.get("before"), 0) or None,
            at_channel=qp.get("at_channel", ""), at_time=qp.get("at_time", ""),
            all_moves=qp.get("moves") == "all")

    def channels(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        model = request.path_params["model"]
        ctx = pages.channels_part(reg, model, *self.summaries.versions.get(reg, model))
        del ctx["moves"]
        return ctx

    def version(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        return pages.version_page(reg, self.summaries.versions,
                                  request.scope.get("root_path", ""),
                                  request.path_params["model"],
                                  _int(request.path_params["number"], 0))

    def version_full(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        model, number = request.path_params["model"], request.path_params["number"]
        if not number.isdigit():  # a tag, channel, branch or id prefix names a version
            v = reg.resolve(f"{model}@{number}")
            return {"redirect": f"/m/{quote(model, safe='')}/v/{v.number}"}
        ctx = self.version(reg, request, viewer)
        v = ctx["v"]
        if v.deleted_at is not None:  # its history only: no gates, signatures, serving
            ctx.update(gate_runs=[], preview=[], policy_digest=None, signatures=None,
                       deployed=[])
            return ctx
        ctx.update(govern.version_governance(reg, v.model, v.id, v.number, viewer.name))
        ctx["deployed"] = [dv for dv in govern.deployments(reg, model=v.model)
                           if v.id in (dv.d.version_id, dv.d.pending_id)
                           or any(g.replica.serving_id == v.id for g in dv.gateways)]
        return ctx

    def deployments(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        return {"deployments": govern.deployments(reg), "every": POLL_S}

    def compare(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        refs = [r for r in request.query_params.getlist("r") if r.strip()]
        return pages.compare_page(reg, request.scope.get("root_path", ""), refs)

    def audit(self, reg: Any, request: Request, viewer: Viewer) -> dict[str, Any]:
        qp = request.query_params
        model = qp.get("model", "")
        if not model and not self.access.may_see_all_audit(viewer):
            raise PermissionDenied("the whole audit trail is for admins",
                                   hint="filter by a model you can read")
        return pages.audit_page(reg, self.summaries.versions, model=model,
                                actor=qp.get("actor", ""),
                                action=qp.get("action", ""), since=qp.get("since", ""),
                                until=qp.get("until", ""),
                                before=_opt_int(qp.get("before")),
                                after=_opt_int(qp.get("after")),
                                verify=self.access.may_see_all_audit(viewer))


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form of at most FORM_BYTES (the UI's forms are a few fields; a
    bigger body is refused before it is all read)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            raise UsageError(f"the form is larger than {FORM_BYTES // 1024} KB; nothing was "
                             "changed", hint="submit the page's own form")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError as exc:
        raise UsageError(f"not a number: {text!r}") from exc


def _opt_int(text: str | None) -> int | None:
    return _int(text, 0) if text else None


def create_ui_app(access: Access, *, title: str = "modelvc") -> Starlette:
    ui = UI(access, title=title)
    routes = [
        Route("/", ui.page("models.html", ui.models)),
        Route("/login", ui.login, methods=["GET", "POST"]),
        Route("/logout", ui.logout, methods=["POST"]),
        Route("/m/{model}", ui.page("model.html", ui.model)),
        Route("/m/{model}/channels", ui.page("_channels.html", ui.channels)),
        Route("/m/{model}/v/{number}", ui.page("version.html", ui.version_full)),
        Route("/compare", ui.page("compare.html", ui.compare)),
        Route("/audit", ui.page("audit.html", ui.audit)),
        Route("/deployments", ui.page("deployments.html", ui.deployments)),
        Route("/deployments/live", ui.page("_deployments_live.html", ui.deployments)),
        *(Route(f"/act/{name}", ui.action(run), methods=["POST"])
          for name, run in actions.ACTIONS.items()),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    async def not_found(request: Request, exc: Exception) -> Response:
        viewer = ui.access.viewer(request.cookies.get(COOKIE))
        return ui.error(request, NotFound(f"no page {request.url.path}",
                                          hint="start from the models page"), viewer)

    return Starlette(routes=routes, exception_handlers={404: not_found})


def standalone(access: Access) -> Starlette:
    """The UI at /ui with / redirecting there (`modelvc ui`)."""

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    return Starlette(routes=[Route("/", root), Mount("/ui", app=create_ui_app(access))])
