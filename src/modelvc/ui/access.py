"""Who is looking: sessions, roles for showing actions, CSRF tokens.

An `Access` turns the session cookie into a `Viewer` and gives the registry that viewer
acts through. The cookie is HttpOnly and SameSite=Strict; every POST must also carry the
CSRF token, an HMAC of the session secret, so it needs no server-side state and agrees
across server processes. Role checks here only decide which buttons to show: the
registry the viewer acts through enforces roles and gates itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from .port import UIRegistry

COOKIE = "modelvc_ui"
ROLES = ("reader", "writer", "promoter", "admin")


def csrf_for(session: str) -> str:
    return hmac.new(session.encode(), b"modelvc-ui-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_for(session), given or "")


@dataclass(frozen=True)
class Viewer:
    name: str
    session: str  # the cookie value (a secret)
    local: bool = False
    handle: Any = field(default=None, compare=False)  # the Access's own (a Principal)

    @property
    def csrf(self) -> str:
        return csrf_for(self.session)


class Access(Protocol):
    """How the app authenticates and authorizes (local launcher or server tokens)."""

    login_hint: str
    login_label: str  # what the login form asks for

    def login(self, secret: str) -> str | None:
        """The session cookie value for a valid login secret (None: refused)."""

    def viewer(self, session: str | None) -> Viewer | None: ...

    def registry(self, viewer: Viewer) -> UIRegistry: ...

    def can(self, viewer: Viewer, role: str, model: str | None) -> bool: ...

    def may_see_all_audit(self, viewer: Viewer) -> bool: ...


class LocalAccess:
    """`modelvc ui`: one user on 127.0.0.1. The launch prints a URL with a random key
    (as Jupyter does), so other local users and web pages cannot drive the registry.
    The registry's own policy (roles, gates) still judges every move, as in the CLI."""

    login_hint = "open the URL `modelvc ui` printed (it carries the key)"
    login_label = "UI key (the key= part of that URL)"

    def __init__(self, reg: UIRegistry, actor: str, key: str | None = None) -> None:
        self._reg = reg
        self.actor = actor
        self.key = key or secrets.token_urlsafe(24)
        self._session = secrets.token_urlsafe(32)

    def login(self, secret: str) -> str | None:
        return self._session if hmac.compare_digest(secret, self.key) else None

    def viewer(self, session: str | None) -> Viewer | None:
        if session is None or not hmac.compare_digest(session, self._session):
            return None
        return Viewer(self.actor, session, local=True)

    def registry(self, viewer: Viewer) -> UIRegistry:
        return self._reg

    def can(self, viewer: Viewer, role: str, model: str | None) -> bool:
        return True

    def may_see_all_audit(self, viewer: Viewer) -> bool:
        return True
