"""Adding or removing a webhook is an admin action: a webhook receives every model's
events. Locally: once the registry has an admin (the admin role on '*' or the applied
policy's roles.admin), only an admin may; refusals change nothing, changes are audited
as the actor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelvc.errors import PermissionDenied
from modelvc.gates.policy import parse_policy
from modelvc.registry import Registry
from tests.cli.test_cli import run
from tests.events.conftest import SECRET
from tests.events.receiver import Receiver

URL = "http://127.0.0.1:9/unused"


def _state(reg: Registry) -> tuple[list[tuple[int, bool]], int]:
    return ([(h.id, h.active) for h in reg._meta.list_webhooks(active_only=False)],
            len(reg._meta.audit_entries()))


def test_single_user_registry_without_admins_allows_anyone(reg: Registry) -> None:
    hook = reg.events.add(URL, secret=SECRET, events=["promote"], actor="anyone")
    reg.events.remove(hook.id, actor="someone-else")
    assert [e.actor for e in reg._meta.audit_entries()] == ["anyone", "someone-else"]


def test_admin_role_on_everything_is_required_once_there_is_one(reg: Registry,
                                                                receiver: Receiver) -> None:
    reg.roles.grant("root", "admin", on="*", actor="boot")
    reg.roles.grant("modeladmin", "admin", on="bert", actor="boot")  # one model only
    reg.roles.grant("writer", "writer", on="*", actor="boot")
    before = _state(reg)
    for actor in ("mallory", "modeladmin", "writer"):
        with pytest.raises(PermissionDenied, match="admin role on the whole registry"):
            reg.events.add(URL, secret=SECRET, events=[], actor=actor)
    assert _state(reg) == before
    hook = reg.events.add(receiver.url, secret=SECRET, events=[], actor="root")
    last = reg._meta.audit_entries()[-1]
    assert (last.action, last.actor, last.target) == ("webhook", "root", receiver.url)
    receiver.wait_for(1)
    assert receiver.received[0].doc["actor"] == "root"  # its own entry acts as a ping
    before = _state(reg)
    with pytest.raises(PermissionDenied):
        reg.events.remove(hook.id, actor="mallory")
    assert _state(reg) == before and [h.id for h in reg.events.hooks()] == [hook.id]
    reg.events.remove(hook.id, actor="root")
    assert reg.events.hooks() == []
    assert reg._meta.audit_entries()[-1].actor == "root"


def test_policy_admins_count_too(reg: Registry) -> None:
    reg._governance.apply_policy(parse_policy("version: 1\nroles: {admin: [carol]}\n"),
                                actor="carol")
    with pytest.raises(PermissionDenied):
        reg.events.add(URL, secret=SECRET, events=[], actor="dave")
    reg.events.add(URL, secret=SECRET, events=[], actor="carol")


def test_cli_refuses_a_non_admin(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    with Registry.open(tmp_path) as reg:
        reg.roles.grant("root", "admin", on="*", actor="boot")
    denied = run(["webhook", "add", URL], tmp_path, ok=False)  # as cli-tester
    assert denied.returncode == 8 and "admin role" in denied.stderr
    with Registry.open(tmp_path) as reg:
        assert reg.events.hooks() == []
    with Registry.open(tmp_path) as reg:
        reg.roles.grant("cli-tester", "admin", on="*", actor="root")
    ok = run(["webhook", "add", URL, "--json"], tmp_path)
    assert json.loads(ok.stdout)["url"] == URL
