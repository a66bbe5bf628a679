"""Role ranking shared by the server's authorize and the gateway's identity
(meta/auth.py): roles per pattern, token caps, the whole registry ("*" only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelvc.errors import Unauthenticated
from modelvc.meta.auth import (
    ROLES,
    ApiToken,
    check_token_live,
    rank,
    role_on,
    strongest,
    token_caps,
)


def test_rank_orders_roles_and_unknown_is_below_all() -> None:
    assert [rank(r) for r in ROLES] == [0, 1, 2, 3]
    assert rank(None) == rank("owner") == -1


def test_strongest_takes_the_best_matching_pattern() -> None:
    held = {"team-*": "writer", "team-a": "reader", "*": "reader", "other": "admin"}
    assert strongest(held, "team-a") == rank("writer")
    assert strongest(held, "solo") == rank("reader")
    assert strongest({"team-*": "admin"}, "solo") == -1
    # the whole registry: only "*" counts, a glob matching everything does not
    assert strongest(held, None) == rank("reader")
    assert strongest({"team-*": "admin"}, None) == -1


def test_token_caps_keep_the_strongest_role_per_pattern() -> None:
    assert token_caps(["reader:*", "promoter:team-*", "writer:team-*"]) == {
        "*": "reader", "team-*": "promoter"}
    assert token_caps([]) == {}


def test_role_on_is_the_binding_capped_by_the_token() -> None:
    bindings = {"team-*": "admin"}
    assert role_on(bindings, None, "team-a") == rank("admin")
    assert role_on(bindings, {"*": "writer"}, "team-a") == rank("writer")
    assert role_on(bindings, {"other": "admin"}, "team-a") == -1
    assert role_on({"*": "reader"}, {"*": "admin"}, "team-a") == rank("reader")
    assert role_on({"*": "admin"}, {"*": "admin"}, None) == rank("admin")


def _token(**kw: object) -> ApiToken:
    at = datetime.now(UTC)
    fields: dict[str, object] = dict(id="t1", name="n", subject="s", scopes=["admin:*"],
                                     expires_at=None, revoked_at=None, created_at=at,
                                     created_by="a")
    fields.update(kw)
    return ApiToken(**fields)  # type: ignore[arg-type]


def test_check_token_live_refuses_revoked_and_expired_tokens() -> None:
    now = datetime.now(UTC)
    check_token_live(_token())
    check_token_live(_token(expires_at=now + timedelta(hours=1)))
    with pytest.raises(Unauthenticated, match=r"^API token t1 was revoked"):
        check_token_live(_token(revoked_at=now))
    with pytest.raises(Unauthenticated, match=r"^the gateway's API token t1 expired at"):
        check_token_live(_token(expires_at=now - timedelta(seconds=1)),
                         "the gateway's API token")
