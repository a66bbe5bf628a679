"""Role checks' messages: what the refused caller can do about it."""

from __future__ import annotations

import pytest

from modelvc.errors import PermissionDenied, Unauthenticated
from modelvc.server.auth import Principal, authorize, authorize_somewhere


def test_a_route_naming_its_model_in_the_body_refuses_with_a_command_to_run() -> None:
    """The hint said `--on (the model the request names)`: a command nobody can run."""
    bob = Principal("bob", {"digits": "reader"})
    with pytest.raises(PermissionDenied) as err:
        authorize_somewhere(bob, "admin")
    assert "bob needs the admin role on the model the request names" in err.value.message
    assert err.value.hint == "ask an admin: `modelvc role grant bob admin --on MODEL`"
    capped = Principal("carol", {"*": "admin"}, token_id="t1", caps={"*": "reader"})
    with pytest.raises(PermissionDenied, match=r"token t1 is limited to reader on \*\)"):
        authorize_somewhere(capped, "writer")
    with pytest.raises(PermissionDenied, match=r"limited to reader on \* and may not act"):
        authorize(capped, "writer", "digits")
    with pytest.raises(Unauthenticated, match="anonymous callers may only read"):
        authorize_somewhere(Principal("anonymous", anonymous=True), "writer")
    authorize_somewhere(Principal("alice", {"digits": "admin"}), "admin")  # holds it: fine
