"""Sign, verify, and refuse: tampered objects, manifests and signatures, revoked and
untrusted keys, unsigned versions under a trust policy."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from modelvc.errors import (
    Corrupt,
    CorruptObject,
    PermissionDenied,
    SignatureInvalid,
    Untrusted,
    UsageError,
)
from modelvc.registry import Registry
from modelvc.signing import (
    create_key,
    parse_policy,
    revoke_key,
    sign_version,
    verify_version,
)
from tests.services.damage import flip_byte
from tests.signing.conftest import Signed, model_folder, require, set_policy, sql


def test_sign_and_verify(signed: Signed) -> None:
    reg, v1 = signed.reg, signed.v1
    assert verify_version(reg, v1, ["alice"]) == (True, "valid signature by alice (tester)")
    assert verify_version(reg, v1, [])[0]  # no names: any registered key
    require(reg, "alice")
    reg.checkout("net", signed.tmp / "co")
    assert set(reg.load("net")) == {"embed.weight", "layer.0.weight", "layer.0.bias",
                                    "head.weight", "position_ids"}
    actions = [e.action for e in reg.audit()]
    assert "key-add" in actions and "sign" in actions


def test_key_create_keeps_private_key_private(reg: Registry, tmp_path: Path) -> None:
    k, path = create_key(reg, "bob", tmp_path / "keys")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "PRIVATE KEY" in path.read_text()
    assert k.id in {x.id for x in reg._meta.list_keys()}
    with pytest.raises(UsageError, match="inside the registry"):
        create_key(reg, "carol", reg._layout.root / "keys")
    assert not (reg._layout.root / "keys").exists()


def test_unsigned_refused_only_when_required(signed: Signed) -> None:
    reg = signed.reg
    v2 = reg.commit(model_folder(signed.tmp / "m2", seed=2), model="net")
    reg.checkout("net", signed.tmp / "free")  # no policy: no signature needed
    set_policy(reg, "trust:\n  keys: [alice]\n  require: false\n")
    reg.load("net")
    require(reg, "alice")
    with pytest.raises(Untrusted, match=r"net@v2 has no valid signature .*not signed"):
        reg.checkout("net", signed.tmp / "co")
    with pytest.raises(Untrusted):
        reg.load("net")
    assert not (signed.tmp / "co").exists()
    assert verify_version(reg, v2, ["alice"])[0] is False
    reg.checkout("net@v1", signed.tmp / "co1")  # the signed one still checks out


def test_untrusted_key_refused(signed: Signed) -> None:
    reg = signed.reg
    _, bob = create_key(reg, "bob", signed.tmp / "keys")
    require(reg, "bob")
    with pytest.raises(Untrusted, match="key alice is not among the trusted keys"):
        reg.checkout("net", signed.tmp / "co")
    sign_version(reg, "net", bob)
    reg.checkout("net", signed.tmp / "co")


def test_revoked_key_refused(signed: Signed) -> None:
    reg = signed.reg
    require(reg, "alice")
    revoke_key(reg, "alice", reason="laptop stolen")
    with pytest.raises(Untrusted, match="key alice was revoked"):
        reg.load("net")
    with pytest.raises(PermissionDenied, match="revoked"):
        sign_version(reg, "net", signed.key)
    assert any(e.action == "key-revoke" and e.reason == "laptop stolen" for e in reg.audit())


def _edit_bundle(reg: Registry, version_id: str, edit: str) -> None:
    row = reg._meta.signatures(version_id)[0]
    b = json.loads(row.signature)
    env = b["dsseEnvelope"]
    if edit == "sig":
        raw = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
        raw[-1] ^= 1
        env["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    else:  # a different file digest in the signed statement, signature left as is
        stmt = json.loads(base64.b64decode(env["payload"]))
        stmt["predicate"]["resources"][0]["digest"] = "0" * 64
        env["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    sql(reg, "UPDATE signatures SET signature = ? WHERE version_id = ?", json.dumps(b),
        version_id)


@pytest.mark.parametrize("edit", ["sig", "payload"])
def test_tampered_signature_refused(signed: Signed, edit: str) -> None:
    reg = signed.reg
    _edit_bundle(reg, signed.v1.id, edit)
    ok, message = verify_version(reg, signed.v1, ["alice"])
    assert not ok and "does not verify with key alice" in message
    require(reg, "alice")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        reg.checkout("net", signed.tmp / "co")


def test_signature_moved_to_another_version_refused(signed: Signed) -> None:
    reg = signed.reg
    v2 = reg.commit(model_folder(signed.tmp / "m2", seed=2), model="net")
    sql(reg, "INSERT INTO signatures SELECT ?, key_id, signature, signed_at, signer "
        "FROM signatures WHERE version_id = ?", v2.id, signed.v1.id)
    require(reg, "alice")
    with pytest.raises(SignatureInvalid, match=f"made for version {signed.v1.id[:12]}"):
        reg.checkout("net@v2", signed.tmp / "co")




def test_tampered_manifest_refused(signed: Signed) -> None:
    reg = signed.reg
    require(reg, "alice")
    flip_byte(reg._store, signed.v1.id, -3)
    with pytest.raises(Corrupt):
        reg.checkout("net", signed.tmp / "co")
    ok, message = verify_version(reg, signed.v1, ["alice"])
    assert not ok and message


def test_tampered_object_refused(signed: Signed) -> None:
    reg = signed.reg
    require(reg, "alice")
    m = reg.manifest("net")
    seg = next(s for f in m.files for s in f.segments if s.tensor == "layer.0.weight")
    flip_byte(reg._store, seg.id, reg._store.size(seg.id) // 2)
    # A fresh process (this one caches the blocks it wrote, already verified).
    with Registry.open(reg._layout.root) as fresh:
        # The signature still verifies (it covers the digests), but the object does not.
        assert verify_version(fresh, signed.v1, ["alice"])[0]
        with pytest.raises(CorruptObject, match="does not match its id"):
            fresh.checkout("net", signed.tmp / "co")
        with pytest.raises(Corrupt):
            _ = fresh.load("net")["layer.0.weight"]


def test_policy_trust_section() -> None:
    assert parse_policy("models: {}\n").require is False
    s = parse_policy("trust:\n  keys: [a, b]\n  require: true\n")
    assert s.keys == ("a", "b") and s.require
    assert parse_policy('[trust]\nkeys = ["a"]\nrequire = true\n').keys == ("a",)
    with pytest.raises(UsageError, match=r"trust\.require"):
        parse_policy("trust:\n  require: maybe\n")
    with pytest.raises(UsageError, match=r"trust\.keys"):
        parse_policy("trust:\n  keys: alice\n")


def test_tampered_signature_refused_under_any_trust_policy(signed: Signed) -> None:
    reg = signed.reg
    _edit_bundle(reg, signed.v1.id, "sig")
    reg.checkout("net", signed.tmp / "no-policy")  # no trust section: signatures unread
    set_policy(reg, "trust:\n  keys: [alice]\n  require: false\n")
    with pytest.raises(SignatureInvalid, match="does not verify with key alice"):
        reg.load("net")


REQUIRE = "version: 1\ntrust:\n  keys: [alice]\n  require: true\n"
ALLOW = "version: 1\ntrust:\n  keys: [alice]\n  require: false\n"


def test_promoting_an_unsigned_version_is_refused_under_require(signed: Signed) -> None:
    """Issue 12 finding 9: the channel would name a version every gateway refuses."""
    reg = signed.reg
    reg.commit(model_folder(signed.tmp / "m2", seed=2), model="net")
    set_policy(reg, REQUIRE)
    reg.promote("net@v1", "production", reason="signed", create=True)
    for force in (False, True):
        with pytest.raises(Untrusted, match="net@v2 has no valid signature"):
            reg.promote("net@v2", "production", reason="unsigned", force=force)
    assert reg.resolve("net@production").number == 1
    set_policy(reg, ALLOW)
    reg.promote("net@v2", "production", reason="allowed now")
    set_policy(reg, REQUIRE)
    reg.rollback("net", "production", to="net@v1", reason="back to signed")
    set_policy(reg, ALLOW)
    reg.promote("net@v2", "production", reason="unsigned again")
    set_policy(reg, REQUIRE)
    with pytest.raises(Untrusted):  # a rollback onto an unsigned version is refused too
        reg.rollback("net", "production", to="net@v2", reason="x")


def test_policy_rows_deleted_by_sql_are_refused_not_obeyed(signed: Signed) -> None:
    """Issue 12 finding 9: deleting the policies rows used to switch `require` off."""
    reg = signed.reg
    reg.commit(model_folder(signed.tmp / "m2", seed=2), model="net")
    set_policy(reg, REQUIRE)
    with pytest.raises(Untrusted):
        reg.checkout("net", signed.tmp / "co")
    sql(reg, "DELETE FROM policies")
    fresh = Registry.open(reg._layout.root.parent)  # a new process: nothing cached
    try:
        with pytest.raises(Corrupt, match="policies table was edited"):
            fresh.checkout("net", signed.tmp / "co")
        with pytest.raises(Corrupt, match="policies table was edited"):
            fresh.promote("net@v2", "production", reason="x", create=True)
        assert not (signed.tmp / "co").exists()
    finally:
        fresh.close()
