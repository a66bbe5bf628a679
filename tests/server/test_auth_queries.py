"""Authenticating a request costs one database query (token joined to its subject's
role bindings), with nothing cached: a revocation made by another process counts from
the very next request. In-process app (Starlette's TestClient), real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from modelvc.registry import Registry
from modelvc.server.app import create_app
from modelvc.server.state import ServerConfig
from tests.services.server import grant_token


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    Registry.init(tmp_path / "repo").close()
    return tmp_path / "repo"


@pytest.fixture
def client(repo: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(registry=str(repo)))) as c:
        yield c


def _queries(client: TestClient, path: str, token: str) -> tuple[int, list[str]]:
    engine = client.app.state.modelvc.registry()._meta._engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def on(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", on)
    try:
        r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", on)
    return r.status_code, seen


def test_one_query_per_authenticated_request(client: TestClient, repo: Path) -> None:
    token = grant_token(repo, "ann", "admin", "*")
    with Registry.open(repo) as reg:
        reg.roles.grant("ann", "writer", on="team-*", actor="boot")
    status, seen = _queries(client, "/api/v1/whoami", token)
    assert status == 200 and len(seen) == 1, seen  # whoami itself reads nothing more
    assert "tokens" in seen[0] and "role_bindings" in seen[0]
    me = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["name"] == "ann" and me["bindings"] == {"*": "admin", "team-*": "writer"}
    status, seen = _queries(client, "/api/v1/whoami", "mvc_not-a-token")
    assert status == 401 and len(seen) == 1


def test_revocations_count_from_the_next_request(client: TestClient, repo: Path) -> None:
    token = grant_token(repo, "bob", "admin", "*")
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/tokens", headers=h).status_code == 200
    with Registry.open(repo) as other:  # as another server process or the CLI would
        other.roles.revoke("bob", on="*", actor="boot")
    r = client.get("/api/v1/tokens", headers=h)
    assert r.status_code == 403 and r.json()["error"] == "PermissionDenied"
    with Registry.open(repo) as other:
        (tok,) = [t for t in other._meta.list_tokens("bob")]
        other._meta.revoke_token(tok.id, actor="boot")
    r = client.get("/api/v1/whoami", headers=h)
    assert r.status_code == 401 and "revoked" in r.json()["message"]
