"""The RegistryAPI areas on every backend: keys, signatures, gates and policy, tokens,
roles, webhooks, deployments; and opening, whoami, closing. Same calls, same results,
same errors, embedded and over a server (where the token's subject acts)."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.errors import (
    AlreadyExists,
    GateNotPassed,
    InvalidName,
    NotFound,
    PermissionDenied,
    SignatureInvalid,
    Unauthenticated,
    UsageError,
)
from modelvc.signing import bundle, keys
from tests.conftest import write_model
from tests.events.receiver import Receiver

from .conftest import ACTOR


def _u(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _two(api: Any, model: str, tmp: Path) -> tuple[Any, Any]:
    base = write_model(tmp / "a.safetensors", 1)
    write_model(tmp / "b.safetensors", 2, base=base)
    v1 = api.commit(tmp / "a.safetensors", model=model, metrics={"accuracy": 0.95})
    v2 = api.commit(tmp / "b.safetensors", model=model, metrics={"accuracy": 0.5})
    return v1, v2


@pytest.mark.verbs("whoami", "close")
def test_open_by_location_whoami_close(api: Any, reopen: Callable[[], Any], model: str,
                                       tmp_path: Path) -> None:
    assert api.whoami()["name"] == ACTOR
    with reopen() as other:  # the same registry, opened again from its location
        v = other.commit(write_model_path(tmp_path), model=model)
        assert other.whoami()["name"] == ACTOR
    assert api.resolve(model) == v
    second = reopen()
    assert second.models()
    second.close()


def write_model_path(tmp: Path) -> Path:
    write_model(tmp / "w.safetensors", 3)
    return tmp / "w.safetensors"


@pytest.mark.verbs("keys.add", "keys.get", "keys.list", "keys.revoke", "signatures.add",
                   "signatures.list", "signatures.check")
def test_keys_and_signatures(api: Any, model: str, tmp_path: Path) -> None:
    v1, _ = _two(api, model, tmp_path)
    private, name = keys.generate(), _u("key")
    k = api.keys.add(name, public_key=keys.public_pem(private.public_key()))
    assert (k.name, k.created_by, k.revoked_at) == (name, ACTOR, None)
    assert api.keys.get(name).id == k.id == api.keys.get(k.id).id
    assert api.keys.get(name).public_key == k.public_key
    assert k.id in [x.id for x in api.keys.list()]
    with pytest.raises(AlreadyExists):
        api.keys.add(name, public_key=keys.public_pem(keys.generate().public_key()))
    with pytest.raises(NotFound):
        api.keys.get(_u("nobody"))

    text = bundle.make(private, bundle.statement(api.manifest(f"{model}@v1"), v1.id))
    sig = api.signatures.add(f"{model}@v1", bundle=text)
    assert (sig.version_id, sig.key_id, sig.signer) == (v1.id, k.id, ACTOR)
    assert [(s.key_id, s.signature) for s in api.signatures.list(f"{model}@v1")] == [
        (k.id, text)]
    with pytest.raises(SignatureInvalid):  # a bundle over v1 does not describe v2
        api.signatures.add(f"{model}@v2", bundle=text, imported=True)
    assert api.signatures.list(f"{model}@v2") == []
    ok = api.signatures.check(f"{model}@v1", keys=[name])
    assert ok.ok and ok.version == v1 and [c.status for c in ok.checks] == ["valid"]
    unsigned = api.signatures.check(f"{model}@v2", keys=[name])
    assert not unsigned.ok and unsigned.checks == []

    revoked = api.keys.revoke(name, reason="rotated")
    assert revoked.revoked_at is not None and api.keys.get(name).revoked_at is not None
    after = api.signatures.check(f"{model}@v1", keys=[name])
    assert not after.ok and [c.status for c in after.checks] == ["revoked"]
    with pytest.raises(PermissionDenied):  # a revoked key signs nothing more
        api.signatures.add(f"{model}@v1", bundle=text)
    actions = [e.action for e in api.audit(model=model)]
    assert actions.count("sign") == 1


@pytest.mark.verbs("gates.apply_policy", "gates.policy", "gates.run", "gates.runs",
                   "gates.report")
def test_policy_and_gates(api: Any, model: str, tmp_path: Path) -> None:
    v1, _ = _two(api, model, tmp_path)
    text = textwrap.dedent(f"""\
        version: 1
        models:
          {model}:
            channels:
              production:
                gates:
                  - metric: "accuracy >= 0.9"
        """)
    change = api.gates.apply_policy(text, source="conformance.yaml")
    assert change.changed
    assert api.gates.policy().digest == change.digest
    assert api.gates.policy().body == text
    assert not api.gates.apply_policy(text).changed

    good = api.gates.run(f"{model}@v1", channel="production")
    assert good.passed and good.applied and good.actor == ACTOR and good.version == v1.id
    bad = api.gates.run(f"{model}@v2", channel="production")
    assert not bad.passed and [r.passed for r in bad.results] == [False]
    runs = api.gates.runs(f"{model}@v1", channel="production")
    assert [(r.id, r.passed, r.actor) for r in runs] == [(good.run_id, True, ACTOR)]
    assert api.gates.runs(f"{model}@v1", channel="staging") == []
    report = api.gates.report(f"{model}@v1", run_id=good.run_id)
    assert report["passed"] is True and report["version"] == v1.id
    with pytest.raises(NotFound):
        api.gates.report(f"{model}@v2", run_id=good.run_id)  # a run of another version

    with pytest.raises(GateNotPassed):
        api.promote(f"{model}@v2", "production", create=True)
    assert api.promote(f"{model}@v1", "production").version_id == v1.id


@pytest.mark.verbs("tokens.create", "tokens.list", "tokens.revoke", "roles.grant",
                   "roles.list", "roles.revoke")
def test_tokens_and_roles(api: Any, model: str, is_remote: bool) -> None:
    subject = _u("bot")
    secret, tok = api.tokens.create("ci", subject=subject, scopes=["writer"],
                                    expires_in_seconds=3600)
    assert secret.startswith("mvc_") and tok.subject == subject
    assert (tok.scopes, tok.created_by, tok.revoked_at) == (["writer:*"], ACTOR, None)
    assert [t.id for t in api.tokens.list(subject=subject)] == [tok.id]
    with pytest.raises(InvalidName):
        api.tokens.create("x", subject="not a name!")

    b = api.roles.grant(subject, "writer", on=model)
    assert (b.subject, b.scope, b.role, b.created_by) == (subject, model, "writer", ACTOR)
    assert [(x.subject, x.scope, x.role) for x in api.roles.list(subject=subject)] == [
        (subject, model, "writer")]
    if is_remote:  # the new token works, as its subject, within its role
        from modelvc.registry import Registry

        with Registry.open(api.location, token=secret) as as_bot:
            assert as_bot.whoami()["name"] == subject
            with pytest.raises(PermissionDenied):
                as_bot.promote(f"{model}@v1", "production", create=True)
    api.roles.revoke(subject, on=model)
    assert api.roles.list(subject=subject) == []

    gone = api.tokens.revoke(tok.id)
    assert gone.revoked_at is not None
    assert api.tokens.list(subject=subject)[0].revoked_at is not None
    if is_remote:
        from modelvc.registry import Registry

        with Registry.open(api.location, token=secret) as as_bot, \
                pytest.raises(Unauthenticated):
            as_bot.models()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver("conformance-secret").start()
    yield r
    r.stop()


@pytest.mark.verbs("events.add", "events.hooks", "events.status", "events.pending",
                   "events.deliver", "events.log", "events.remove")
def test_webhooks(api: Any, model: str, tmp_path: Path, receiver: Receiver) -> None:
    hook = api.events.add(receiver.url, secret="conformance-secret", events=["promote"])
    try:
        assert hook.url == receiver.url and hook.events == ["promote"]
        assert hook.id in [h.id for h in api.events.hooks()]
        _two(api, model, tmp_path)
        receiver.fail_next = 100  # held back: the event stays pending
        api.promote(f"{model}@v1", "staging", create=True)
        status = {s.webhook.id: s.pending for s in api.events.status()}
        assert status[hook.id] == 1 == api.events.pending(hook)
        receiver.fail_next = 0
        report = api.events.deliver(wait=30)
        assert report.pending.get(hook.id, 0) == 0 and api.events.pending(hook) == 0
        got = [r.doc for r in receiver.received if r.event == "promote"]
        assert any(d.get("target") == f"{model}@staging" for d in got), got
        log = api.events.log(webhook_id=hook.id)
        assert log and log[-1].status == 204 and {d.webhook_id for d in log} == {hook.id}
    finally:
        api.events.remove(hook.id)
    assert hook.id not in [h.id for h in api.events.hooks()]


@pytest.mark.verbs("deployments.create", "deployments.get", "deployments.list",
                   "deployments.delete", "deployments.replicas")
def test_deployments(api: Any, model: str, tmp_path: Path) -> None:
    _two(api, model, tmp_path)
    name = _u("web")
    d = api.deployments.create(name, model=model, channel="production", strategy="canary",
                               selector={"zone": "a"})
    assert (d.name, d.model, d.channel, d.strategy, d.selector, d.state, d.epoch) == (
        name, model, "production", "canary", {"zone": "a"}, "new", 0)
    assert api.deployments.get(name) == d
    assert [x.name for x in api.deployments.list(model=model)] == [name]
    with pytest.raises(AlreadyExists):
        api.deployments.create(name, model=model)
    with pytest.raises(UsageError):
        api.deployments.create(_u("x"), model=model, strategy="yolo")
    assert api.deployments.replicas(model=model) == []  # no gateway reported in
    api.deployments.delete(name)
    assert api.deployments.list(model=model) == []
    with pytest.raises(NotFound):
        api.deployments.get(name)
    with pytest.raises(NotFound):
        api.deployments.delete(name)
    # both recorded in the audit trail, with who did them
    made, gone = api.audit(model=model, action="deploy-create")[-1], api.audit(
        model=model, action="deploy-delete")[-1]
    assert made.target == gone.target == f"deployment:{name}"
    assert made.after["strategy"] == "canary" and gone.before["channel"] == "production"
    assert made.actor == gone.actor and made.actor
