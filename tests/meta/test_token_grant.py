"""The server's token check: one query (token joined to role bindings), hashed at
rest, nothing cached (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from modelvc.meta.auth import new_token
from modelvc.meta.store import MetaStore


@contextmanager
def statements(meta: MetaStore) -> Iterator[list[str]]:
    """Every SQL statement the store sends while the block runs."""
    seen: list[str] = []

    def on(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(meta._engine, "before_cursor_execute", on)
    try:
        yield seen
    finally:
        sa.event.remove(meta._engine, "before_cursor_execute", on)


def queries(seen: list[str]) -> list[str]:
    """Without the transaction brackets (SQLite's BEGIN is sent as a statement)."""
    return [s for s in seen if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]


def test_token_check_is_one_query(meta: MetaStore) -> None:
    token, digest = new_token()
    row = meta.create_token(name="t", subject="ann", secret_hash=digest, scopes=["writer"],
                            expires_at=None, actor="boot")
    meta.grant_role("ann", "*", "reader", actor="boot")
    meta.grant_role("ann", "team-*", "writer", actor="boot")
    meta.grant_role("bob", "*", "admin", actor="boot")
    with statements(meta) as seen:
        grant = meta.token_grant(digest)
    assert len(queries(seen)) == 1, seen
    assert "tokens" in queries(seen)[0] and "role_bindings" in queries(seen)[0]
    assert grant is not None
    tok, bindings = grant
    assert tok == row
    assert [(b.subject, b.scope, b.role) for b in bindings] == [
        ("ann", "*", "reader"), ("ann", "team-*", "writer")]
    assert bindings == meta.role_bindings("ann")
    # A subject with no role still authenticates (no bindings); unknown hashes are None.
    _, lone = new_token()
    meta.create_token(name="u", subject="nobody", secret_hash=lone, scopes=[],
                      expires_at=None, actor="boot")
    assert meta.token_grant(lone) is not None and meta.token_grant(lone)[1] == []  # type: ignore[index]
    assert meta.token_grant("0" * 64) is None
    # Revocation is visible to the very next check (nothing is cached).
    meta.revoke_token(row.id, actor="boot")
    again = meta.token_grant(digest)
    assert again is not None and again[0].revoked_at is not None
    # At rest: the sha256 only, never the token.
    with meta._engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM tokens"))]
    assert any(digest in r for r in stored)
    assert not any(token in str(v) for r in stored for v in r)
