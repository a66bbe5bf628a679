"""Signing verbs over a registry: keys, sign, verify, export, import (each mutation audited)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write
from ..errors import ModelvcError, NotFound, PermissionDenied, SignatureInvalid, UsageError
from ..lineage import author
from ..meta.api import AuditEntry, Signature, SigningKey, VersionRow
from ..names import check_name
from . import bundle, keys
from .bundle import Bundle
from .trust import SigCheck, check_signatures

if TYPE_CHECKING:
    from ..registry import Registry


def register_key(reg: Registry, name: str, public_pem: str | bytes, *,
                 actor: str | None = None) -> SigningKey:
    """Register a public key (e.g. one whose owner signs with the model_signing tool)."""
    check_name(name, "key name")
    pem = keys.public_pem(keys.parse_public(public_pem))
    who = actor or author()
    k = SigningKey(keys.key_id(pem), name, pem, datetime.now(UTC), who, None)
    reg.meta.add_key(k, AuditEntry(actor=who, action="key-add", target=f"key:{name}",
                                   after={"key": name, "id": k.id}))
    return k


def create_key(reg: Registry, name: str, out_dir: Path, *, actor: str | None = None
               ) -> tuple[SigningKey, Path]:
    """Generate an ECDSA P-256 pair: register the public key, write OUT/NAME.key (0600)
    and OUT/NAME.pub. The private key never enters the registry."""
    check_name(name, "key name")
    out_dir = Path(out_dir).resolve()
    if out_dir.is_relative_to(reg.layout.root.resolve()):
        raise UsageError(f"{out_dir} is inside the registry folder; keep private keys apart",
                         hint="pass --out with a folder outside .modelvc")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = keys.generate()
    priv_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    pub = keys.public_pem(private.public_key())
    for p in (priv_path, pub_path):
        if p.exists():
            raise UsageError(f"{p} already exists", hint="choose another name or --out")
    k = register_key(reg, name, pub, actor=actor)
    keys.write_new(priv_path, keys.private_pem(private), 0o600)
    keys.write_new(pub_path, pub.encode(), 0o644)
    return k, priv_path


def revoke_key(reg: Registry, name: str, *, reason: str = "", actor: str | None = None
               ) -> SigningKey:
    k = reg.meta.get_key(name)
    reg.meta.revoke_key(k.id, AuditEntry(actor=actor or author(), action="key-revoke",
                                         target=f"key:{k.name}", before={"key": k.name},
                                         after={"revoked": True}, reason=reason))
    return reg.meta.get_key(k.id)


def _usable_key(reg: Registry, key_id: str) -> SigningKey:
    try:
        k = reg.meta.get_key(key_id)
    except NotFound as exc:
        raise NotFound(f"the signing key {key_id[:12]} is not registered",
                       hint="register its public key: `modelvc key add NAME PUBFILE`") from exc
    if k.revoked_at is not None:
        raise PermissionDenied(f"key {k.name} was revoked; it cannot sign")
    return k


def _store(reg: Registry, v: VersionRow, k: SigningKey, text: str, action: str,
           actor: str | None) -> Signature:
    who = actor or author()
    sig = Signature(v.id, k.id, text, datetime.now(UTC), who)
    reg.meta.add_signature(sig, AuditEntry(
        actor=who, action=action, model=v.model, target=f"{v.model}@v{v.number}",
        after={"version": v.id, "key": k.name}))
    return sig


def sign_version(reg: Registry, ref: str, key_file: Path, *, password: str | None = None,
                 actor: str | None = None) -> Signature:
    """Sign REF's manifest digest and file sha256 list with the private key in KEY_FILE."""
    v = reg.resolve(ref)
    private = keys.load_private(key_file, password)
    k = _usable_key(reg, keys.key_id(keys.public_pem(private.public_key())))
    m = reg.trust.read_manifest(v.id)
    text = bundle.make(private, bundle.statement(m, v.id))
    return _store(reg, v, k, text, "sign", actor)


def import_signature(reg: Registry, ref: str, sig_file: Path, *, actor: str | None = None
                     ) -> Signature:
    """Store a model-signing bundle (e.g. from `model_signing sign key`) for REF, after
    checking it verifies with a registered key and lists exactly the version's files."""
    v = reg.resolve(ref)
    text = Path(sig_file).read_text(encoding="utf-8")
    b = Bundle.parse(text)
    candidates = ([_usable_key(reg, b.hint)] if b.hint else
                  [k for k in reg.meta.list_keys() if k.revoked_at is None])
    k = next((c for c in candidates if b.verify(keys.parse_public(c.public_key))), None)
    if k is None:
        raise SignatureInvalid(f"{sig_file} does not verify with "
                               + (f"key {candidates[0].name}" if b.hint else
                                  "any registered key"))
    why = bundle.mismatch(b.statement(), reg.trust.read_manifest(v.id), v.id)
    if why is not None:
        raise SignatureInvalid(f"{sig_file} does not describe {v.model}@v{v.number}: {why}")
    return _store(reg, v, k, text, "sign-import", actor)


def check_version(reg: Registry, ref: str, key_names: Sequence[str] | None = None
                  ) -> tuple[VersionRow, list[SigCheck]]:
    v = reg.resolve(ref)
    return v, check_signatures(reg.meta, reg.trust.read_manifest(v.id), v.id, key_names)


def verify_version(reg: Registry, version: VersionRow, key_names: Sequence[str] | None = None
                   ) -> tuple[bool, str]:
    """For the `signature` gate: is VERSION validly signed by one of KEY_NAMES (by default
    the policy's trusted keys; none named: any registered key)? Never raises."""
    trusted = list(key_names) if key_names is not None else list(reg.trust.settings().keys)
    try:
        return True, reg.trust.verify(version, trusted)
    except ModelvcError as exc:
        return False, exc.message


def export_signature(reg: Registry, ref: str, dest: Path, *, key: str | None = None
                     ) -> tuple[Path, str]:
    """Write a valid signature of REF as a model-signing bundle: DEST/model.sig when DEST
    is a folder (a checkout), else DEST itself. Without `key` the version must have valid
    signatures by one key only. Returns the file written and the key's name."""
    v, checks = check_version(reg, ref)
    wanted = reg.meta.get_key(key).id if key else None
    ok = [c for c in checks if c.status == "valid" and wanted in (None, c.key_id)]
    if not ok:
        raise NotFound(f"{v.model}@v{v.number} has no valid signature"
                       + (f" by key {key}" if key else ""),
                       hint=f"sign it first: `modelvc sign {ref} --key KEYFILE`")
    signers = sorted({c.key for c in ok})
    if len(signers) > 1:  # a bundle carries one signature: which one must be said
        raise UsageError(f"{v.model}@v{v.number} has valid signatures by {len(signers)} keys: "
                         + ", ".join(signers),
                         hint="choose one with --key NAME")
    text = next(s.signature for s in reg.meta.signatures(v.id) if s.key_id == ok[0].key_id)
    dest = Path(dest)
    path = dest / bundle.SIGNATURE_NAME if dest.is_dir() else dest
    atomic_write(path, text.encode(), mode=0o644)
    return path, ok[0].key
