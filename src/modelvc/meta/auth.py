"""API tokens and role bindings for the registry server (a mixin of MetaStore).

A token is `mvc_` + 256 random bits; only its sha256 is stored (a fast hash is right
for high-entropy secrets: there is nothing to brute-force). Every change is audited in
the same transaction as the change itself.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa

from ..errors import NotFound, Unauthenticated, UsageError
from ..records import RoleBinding, Token
from .api import AuditEntry
from .area import Area
from .governance import append_audit
from .rows import now, utc
from .schema import role_bindings, tokens

ApiToken = Token  # its name inside the package
ROLES = ("reader", "writer", "promoter", "admin")  # weakest first
TOKEN_PREFIX = "mvc_"


def new_token() -> tuple[str, str]:
    """(token, sha256 hex): the token is shown once, the hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


MAX_TOKEN_NAME = 128  # the column's width (a longer name fails on PostgreSQL)


def check_token_name(name: str) -> str:
    """A token's label: 1-128 printable characters."""
    if not (0 < len(name) <= MAX_TOKEN_NAME and name.isprintable()):
        raise UsageError(f"invalid token name {name[:60]!r} ({len(name)} characters)",
                         hint=f"use 1-{MAX_TOKEN_NAME} printable characters")
    return name


def parse_scopes(scopes: list[str]) -> list[str]:
    """Normalise "ROLE" / "ROLE:PATTERN" caps ("reader" means "reader:*")."""
    out = []
    for s in scopes or ["admin:*"]:
        role, _, pattern = s.partition(":")
        check_role(role)
        if len(pattern) > MAX_TOKEN_NAME or not pattern.isprintable():
            raise UsageError(f"invalid scope pattern {pattern[:60]!r}",
                             hint=f"a model name or glob of at most {MAX_TOKEN_NAME} characters")
        out.append(f"{role}:{pattern or '*'}")
    return out


# --- role ranking (shared by server/auth.py and serving/identity.py, which may not
# import each other)
def rank(role: str | None) -> int:
    """Position of ROLE in ROLES, weakest 0; -1 for None or an unknown role."""
    return ROLES.index(role) if role in ROLES else -1


def strongest(patterns: dict[str, str], model: str | None) -> int:
    """Rank of the strongest role PATTERNS (scope pattern -> role) give on MODEL;
    model=None means the whole registry, where only "*" counts. -1: none."""
    if model is None:
        return rank(patterns.get("*"))
    return max((rank(r) for p, r in patterns.items() if fnmatchcase(model, p)), default=-1)


def token_caps(scopes: list[str]) -> dict[str, str]:
    """A token's "ROLE:PATTERN" scopes as pattern -> the strongest role it caps to."""
    caps: dict[str, str] = {}
    for s in scopes:
        role, _, pattern = s.partition(":")
        if rank(role) > rank(caps.get(pattern)):
            caps[pattern] = role
    return caps


def role_on(bindings: dict[str, str], caps: dict[str, str] | None, model: str | None) -> int:
    """Rank of the strongest role a subject with these role BINDINGS may use on MODEL
    through a token with these CAPS (None: no cap). -1: none."""
    held = strongest(bindings, model)
    if caps is not None:
        held = min(held, strongest(caps, model))
    return held


def check_token_live(tok: ApiToken, what: str = "API token") -> None:
    """Unauthenticated if the token was revoked or has expired (WHAT names it)."""
    if tok.revoked_at is not None:
        raise Unauthenticated(f"{what} {tok.id} was revoked",
                              hint="ask an admin for a new one (`modelvc token create`)")
    if tok.expires_at is not None and tok.expires_at <= datetime.now(UTC):
        raise Unauthenticated(f"{what} {tok.id} expired at {tok.expires_at:%Y-%m-%d %H:%M}",
                              hint="ask an admin for a new one (`modelvc token create`)")


def _token(r: Any) -> ApiToken:
    m = r._mapping
    return ApiToken(m["id"], m["name"], m["subject"], list(m["scopes"]),
                    utc(m["expires_at"]) if m["expires_at"] else None,
                    utc(m["revoked_at"]) if m["revoked_at"] else None,
                    utc(m["created_at"]), m["created_by"])


def _binding(r: Any) -> RoleBinding:
    m = r._mapping
    return RoleBinding(m["subject"], m["scope"], m["role"], utc(m["created_at"]),
                       m["created_by"])


class TokensArea(Area):

    def ping(self) -> None:
        """One round trip to the database (readiness probes)."""
        self._tx(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    # --- tokens
    def create_token(self, *, name: str, subject: str, secret_hash: str, scopes: list[str],
                     expires_at: datetime | None, actor: str) -> ApiToken:
        scopes = parse_scopes(scopes)
        check_token_name(name)

        def tx(conn: sa.Connection) -> ApiToken:
            at = now()
            tid = secrets.token_hex(8)
            conn.execute(sa.insert(tokens).values(
                id=tid, name=name, subject=subject, secret_hash=secret_hash, scopes=scopes,
                expires_at=expires_at, revoked_at=None, created_at=at, created_by=actor))
            append_audit(conn, AuditEntry(
                actor=actor, action="token-create", target=f"token:{tid}",
                after={"name": name, "subject": subject, "scopes": scopes,
                       "expires_at": expires_at.isoformat() if expires_at else None}), at)
            return ApiToken(tid, name, subject, scopes, expires_at, None, at, actor)

        out: ApiToken = self._tx(tx, write=True)
        return out

    def token_by_hash(self, secret_hash: str) -> ApiToken | None:
        q = sa.select(tokens).where(tokens.c.secret_hash == secret_hash)
        return self._tx(lambda conn: next((_token(r) for r in conn.execute(q)), None))  # type: ignore[no-any-return]

    def token_grant(self, secret_hash: str) -> tuple[ApiToken, list[RoleBinding]] | None:
        """The token with this hash and its subject's role bindings, in ONE query (a
        left join; the server authenticates every request with it). None if unknown.
        The caller checks revocation and expiry: nothing is cached, so a revocation
        counts from the next request on."""
        rb = role_bindings
        q = (sa.select(tokens, rb.c.scope.label("rb_scope"), rb.c.role.label("rb_role"),
                       rb.c.created_at.label("rb_created_at"),
                       rb.c.created_by.label("rb_created_by"))
             .select_from(tokens.outerjoin(rb, rb.c.subject == tokens.c.subject))
             .where(tokens.c.secret_hash == secret_hash)
             .order_by(rb.c.scope))
        rows = list(self._tx(lambda conn: conn.execute(q).all()))
        if not rows:
            return None
        tok = _token(rows[0])
        bindings = [RoleBinding(tok.subject, m["rb_scope"], m["rb_role"],
                                utc(m["rb_created_at"]), m["rb_created_by"])
                    for m in (r._mapping for r in rows) if m["rb_scope"] is not None]
        return tok, bindings

    def list_tokens(self, subject: str | None = None) -> list[ApiToken]:
        q = sa.select(tokens).order_by(tokens.c.created_at, tokens.c.id)
        if subject is not None:
            q = q.where(tokens.c.subject == subject)
        return list(self._tx(lambda conn: [_token(r) for r in conn.execute(q)]))

    def revoke_token(self, token_id: str, *, actor: str) -> ApiToken:
        def tx(conn: sa.Connection) -> ApiToken:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
            if row is None:
                raise NotFound(f"no token {token_id!r}", hint="see `modelvc token list`")
            t = _token(row)
            if t.revoked_at is not None:
                return t
            at = now()
            conn.execute(sa.update(tokens).where(tokens.c.id == token_id)
                         .values(revoked_at=at))
            append_audit(conn, AuditEntry(actor=actor, action="token-revoke",
                                          target=f"token:{token_id}",
                                          before={"subject": t.subject, "name": t.name}), at)
            return ApiToken(**{**vars(t), "revoked_at": at})

        out: ApiToken = self._tx(tx, write=True)
        return out

    # --- roles
    def grant_role(self, subject: str, scope: str, role: str, *, actor: str) -> RoleBinding:
        check_role(role)
        if not scope or not subject:
            raise UsageError("a role binding needs a subject and a model or pattern",
                             hint="e.g. `modelvc role grant alice writer --on 'team-*'`")

        def tx(conn: sa.Connection) -> RoleBinding:
            at = now()
            key = (role_bindings.c.subject == subject) & (role_bindings.c.scope == scope)
            old = conn.execute(sa.select(role_bindings.c.role).where(key)).scalar()
            conn.execute(sa.delete(role_bindings).where(key))
            conn.execute(sa.insert(role_bindings).values(
                subject=subject, scope=scope, role=role, created_at=at, created_by=actor))
            append_audit(conn, AuditEntry(actor=actor, action="role-grant",
                                          target=f"{subject}@{scope}",
                                          before={"role": old}, after={"role": role}), at)
            return RoleBinding(subject, scope, role, at, actor)

        out: RoleBinding = self._tx(tx, write=True)
        return out

    def revoke_role(self, subject: str, scope: str, *, actor: str) -> None:
        def tx(conn: sa.Connection) -> None:
            key = (role_bindings.c.subject == subject) & (role_bindings.c.scope == scope)
            old = conn.execute(sa.select(role_bindings.c.role).where(key)).scalar()
            if old is None:
                raise NotFound(f"{subject} has no role on {scope!r}",
                               hint="see `modelvc role list`")
            conn.execute(sa.delete(role_bindings).where(key))
            append_audit(conn, AuditEntry(actor=actor, action="role-revoke",
                                          target=f"{subject}@{scope}", before={"role": old}))

        self._tx(tx, write=True)

    def role_bindings(self, subject: str | None = None) -> list[RoleBinding]:
        q = sa.select(role_bindings).order_by(role_bindings.c.subject, role_bindings.c.scope)
        if subject is not None:
            q = q.where(role_bindings.c.subject == subject)
        return list(self._tx(lambda conn: [_binding(r) for r in conn.execute(q)]))
