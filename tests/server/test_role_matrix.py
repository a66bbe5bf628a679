"""Every role x every action against a real server: allowed exactly when the role
suffices, otherwise 401/403 with nothing changed (audit trail, refs, versions, objects,
tokens, roles compared before and after)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelvc.errors import PermissionDenied, Unauthenticated
from modelvc.events import RemoteEvents
from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token

M = "bert"
RANK = {None: -1, "reader": 0, "writer": 1, "promoter": 2, "admin": 3}
# persona -> (role on M, role on the whole registry, how a refusal looks)
PERSONAS: dict[str, tuple[str | None, str | None, type[Exception]]] = {
    "none": (None, None, PermissionDenied),
    "anonymous": ("reader", "reader", Unauthenticated),
    "reader": ("reader", None, PermissionDenied),
    "writer": ("writer", None, PermissionDenied),
    "promoter": ("promoter", None, PermissionDenied),
    "admin": ("admin", "admin", PermissionDenied),
    "model-admin": ("admin", None, PermissionDenied),
    "writer-elsewhere": (None, None, PermissionDenied),
    "capped-admin": ("reader", "reader", PermissionDenied),
    "expired": (None, None, Unauthenticated),
    "revoked": (None, None, Unauthenticated),
}


@dataclass
class Env:
    server: ServerProcess
    path: Path
    admin: RemoteRegistry
    tokens: dict[str, str | None]
    tmp: Path

    def client(self, persona: str) -> RemoteRegistry:
        return RemoteRegistry(self.server.url, token=self.tokens[persona])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("roles")
    path = tmp / "repo"
    Registry.init(path).close()
    past = datetime.now(UTC) - timedelta(seconds=1)
    tokens: dict[str, str | None] = {
        "none": grant_token(path, "none", None),
        "anonymous": None,
        "reader": grant_token(path, "reader", "reader", M),
        "writer": grant_token(path, "writer", "writer", M),
        "promoter": grant_token(path, "promoter", "promoter", M),
        "admin": grant_token(path, "admin", "admin", "*"),
        "model-admin": grant_token(path, "model-admin", "admin", M),
        "writer-elsewhere": grant_token(path, "writer-elsewhere", "writer", "other-*"),
        "capped-admin": grant_token(path, "capped-admin", "admin", "*", scopes=["reader"]),
        "expired": grant_token(path, "expired", "admin", "*", expires_at=past),
        "revoked": grant_token(path, "revoked", "admin", "*", revoked=True),
    }
    server = ServerProcess(path, tmp / "server.log",
                    env={"MODELVC_SERVER_ANONYMOUS_READ": "true"}).start()
    admin = RemoteRegistry(server.url, token=tokens["admin"])
    src = tmp / "v1.safetensors"
    base = write_model(src, 0)
    admin.commit(src, model=M)
    write_model(tmp / "v2.safetensors", 1, base=base)
    admin.commit(tmp / "v2.safetensors", model=M)
    yield Env(server, path, admin, tokens, tmp)
    admin.close()
    server.stop()


def _u(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _commit_tmp(e: Env) -> str:
    f = e.tmp / f"{_u('c')}.safetensors"
    write_model(f, int(uuid.uuid4().int % 1000) + 10)
    branch = _u("tmp")
    vid = str(e.admin.commit(f, model=M, branch=branch).id)
    e.admin.delete_ref(M, branch)  # a version a ref points at cannot be deleted
    return vid


def _promote_twice(e: Env) -> str:
    ch = _u("staging")
    e.admin.promote(f"{M}@v1", ch, create=True)
    e.admin.promote(f"{M}@v2", ch)
    return ch


def _new_channel(e: Env) -> str:
    ch = _u("ch")
    e.admin.promote(f"{M}@v1", ch, create=True)
    return ch


def _new_branch(e: Env) -> str:
    name = _u("b")
    e.admin.create_branch(M, name)
    return name


def _new_tag(e: Env) -> str:
    name = _u("t")
    e.admin.tag(f"{M}@v1", name)
    return name


HOOK = "http://127.0.0.1:9/unused"


def _new_webhook(e: Env) -> int:
    return RemoteEvents(e.admin._call).add(HOOK, secret="s", events=["none"]).id


# name -> (role needed, on M or the whole registry, setup as admin, the action)
Setup = Callable[[Env], Any]
Act = Callable[[RemoteRegistry, Any, Env], Any]
ACTIONS: dict[str, tuple[str, str, Setup, Act]] = {
    "resolve": ("reader", "model", lambda e: None, lambda c, x, e: c.resolve(f"{M}@v1")),
    "versions": ("reader", "model", lambda e: None, lambda c, x, e: c.versions(M)),
    "refs": ("reader", "model", lambda e: None, lambda c, x, e: c.refs(M)),
    "history": ("reader", "model", lambda e: None, lambda c, x, e: c.history(M)),
    "diff": ("reader", "model", lambda e: None, lambda c, x, e: c.diff(f"{M}@v1", f"{M}@v2")),
    "checkout": ("reader", "model", lambda e: None,
                 lambda c, x, e: c.checkout(f"{M}@v1", e.tmp / _u("out") / "m.safetensors")),
    "load": ("reader", "model", lambda e: None,
             lambda c, x, e: c.load(f"{M}@v1")["embed.weight"]),
    "storage": ("reader", "model", lambda e: None, lambda c, x, e: c.storage(f"{M}@v1")),
    "audit-model": ("reader", "model", lambda e: None, lambda c, x, e: c.audit(model=M)),
    "commit": ("writer", "model", lambda e: None,
               lambda c, x, e: c.commit(e.tmp / "v2.safetensors", model=M, branch=_u("w"))),
    "create-branch": ("writer", "model", lambda e: None,
                      lambda c, x, e: c.create_branch(M, _u("br"))),
    "tag": ("writer", "model", lambda e: None, lambda c, x, e: c.tag(f"{M}@v1", _u("t"))),
    "delete-branch": ("writer", "model", _new_branch, lambda c, x, e: c.delete_ref(M, x)),
    "promote": ("promoter", "model", lambda e: None,
                lambda c, x, e: c.promote(f"{M}@v2", "production", reason="ok", create=True)),
    "rollback": ("promoter", "model", _promote_twice, lambda c, x, e: c.rollback(M, x)),
    "delete-channel": ("promoter", "model", _new_channel, lambda c, x, e: c.delete_ref(M, x)),
    "force-promote": ("admin", "model", lambda e: None,
                      lambda c, x, e: c.promote(f"{M}@v1", "production", force=True,
                                                reason="incident")),
    "delete-tag": ("admin", "model", _new_tag,
                   lambda c, x, e: c.delete_ref(M, x, reason="test")),
    "delete-version": ("admin", "model", _commit_tmp,
                       lambda c, x, e: c.delete(f"{M}@{x}", reason="test")),
    "grant-role": ("admin", "model", lambda e: None,
                   lambda c, x, e: c.roles.grant(_u("someone"), "reader", on=M)),
    "gc": ("admin", "global", lambda e: None,
           lambda c, x, e: c.gc(dry_run=False, grace_seconds=3600)),
    "verify": ("admin", "global", lambda e: None, lambda c, x, e: c.verify()),
    "audit-all": ("admin", "global", lambda e: None, lambda c, x, e: c.audit()),
    "create-token": ("admin", "global", lambda e: None,
                     lambda c, x, e: c.tokens.create(_u("tok"), subject="x")),
    "list-tokens": ("admin", "global", lambda e: None, lambda c, x, e: c.tokens.list()),
    "webhook-add": ("admin", "global", lambda e: None,
                    lambda c, x, e: RemoteEvents(c._call).add(HOOK, secret="s",
                                                              events=["none"])),
    "webhook-remove": ("admin", "global", _new_webhook,
                       lambda c, x, e: RemoteEvents(c._call).remove(x)),
    "webhook-list": ("admin", "global", lambda e: None,
                     lambda c, x, e: RemoteEvents(c._call).status()),
}
AUDITED = {"commit", "create-branch", "tag", "delete-branch", "promote", "rollback",
           "delete-channel", "force-promote", "delete-tag", "delete-version", "grant-role",
           "create-token", "webhook-add", "webhook-remove"}


def snapshot(path: Path) -> Any:
    """Everything a mutation could change, read straight from the registry."""
    with Registry.open(path) as reg:
        trail = reg._meta.audit_entries()
        return (
            len(trail), trail[-1].hash if trail else None,
            [(r.name, r.kind, r.version_id, r.revision) for r in reg._meta.list_refs(M)],
            [(v.id, v.deleted_at) for v in reg._meta.list_versions(M, include_deleted=True)],
            sorted(o.key for o in reg._store.list()) if hasattr(reg._store, "list") else None,
            [(t.id, t.revoked_at) for t in reg._meta.list_tokens()],
            [(b.subject, b.scope, b.role) for b in reg.roles.list()],
            [(h.id, h.active) for h in reg._meta.list_webhooks(active_only=False)],
        )


@pytest.mark.parametrize("persona", list(PERSONAS))
def test_role_matrix(env: Env, persona: str) -> None:
    on_model, on_all, refusal = PERSONAS[persona]
    client = env.client(persona)
    wrong: list[str] = []
    for name, (needed, where, setup, act) in ACTIONS.items():
        held = on_model if where == "model" else on_all
        allowed = RANK[held] >= RANK[needed]
        ctx = setup(env)
        before = snapshot(env.path)
        try:
            act(client, ctx, env)
        except (PermissionDenied, Unauthenticated) as exc:
            if allowed:
                wrong.append(f"{name}: refused ({exc.message}) but {persona} may")
            elif type(exc) is not refusal:
                wrong.append(f"{name}: {type(exc).__name__}, expected {refusal.__name__}")
            if snapshot(env.path) != before:
                wrong.append(f"{name}: refused, yet the registry changed")
            continue
        if not allowed:
            wrong.append(f"{name}: {persona} was allowed without the {needed} role")
        elif name in AUDITED:
            with Registry.open(env.path) as reg:
                last = reg._meta.audit_entries()[-1]
            if last.actor != persona:
                wrong.append(f"{name}: audited as {last.actor!r}, not {persona!r}")
    client.close()
    assert wrong == []


def test_models_list_is_filtered(env: Env) -> None:
    for persona, (on_model, _, _) in PERSONAS.items():
        if persona in ("expired", "revoked"):
            continue
        with env.client(persona) as c:
            assert (M in c.models()) == (on_model is not None), persona
