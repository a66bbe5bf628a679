"""Signing verbs over any registry (RegistryAPI: embedded or a server): create a key
pair, sign with a private key, import and export OpenSSF model-signing bundles. The
private key never leaves this process; the registry stores public keys and bundles,
each verified before it is stored (RegistryAPI.signatures.add) and audited."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write
from ..errors import ModelvcError, NotFound, SignatureInvalid, UsageError
from ..names import check_name
from . import bundle, keys

if TYPE_CHECKING:
    from ..api import RegistryAPI, Signature, SignatureReport, SigningKey, Version


def register_key(reg: RegistryAPI, name: str, public_pem: str | bytes, *,
                 actor: str | None = None) -> SigningKey:
    """Register a public key (e.g. one whose owner signs with the model_signing tool)."""
    return reg.keys.add(name, public_key=public_pem, actor=actor)


def create_key(reg: RegistryAPI, name: str, out_dir: Path, *, actor: str | None = None
               ) -> tuple[SigningKey, Path]:
    """Generate an ECDSA P-256 pair: register the public key, write OUT/NAME.key (0600)
    and OUT/NAME.pub. The private key never enters the registry."""
    check_name(name, "key name")
    out_dir = Path(out_dir).resolve()
    if not reg.location.startswith(("http://", "https://")) and out_dir.is_relative_to(
            Path(reg.location).resolve()):
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


def revoke_key(reg: RegistryAPI, name: str, *, reason: str = "", actor: str | None = None
               ) -> SigningKey:
    return reg.keys.revoke(name, reason=reason, actor=actor)


def sign_version(reg: RegistryAPI, ref: str, key_file: Path, *, password: str | None = None,
                 actor: str | None = None) -> Signature:
    """Sign REF's manifest digest and file sha256 list with the private key in KEY_FILE."""
    v = reg.resolve(ref)
    private = keys.load_private(key_file, password)
    m = reg.manifest(f"{v.model}@{v.id}")  # verified against its id on read
    text = bundle.make(private, bundle.statement(m, v.id))
    return reg.signatures.add(f"{v.model}@{v.id}", bundle=text, actor=actor)


def import_signature(reg: RegistryAPI, ref: str, sig_file: Path, *, actor: str | None = None
                     ) -> Signature:
    """Store a model-signing bundle (e.g. from `model_signing sign key`) for REF, after
    checking it verifies with a registered key and lists exactly the version's files."""
    text = Path(sig_file).read_text(encoding="utf-8")
    try:
        return reg.signatures.add(ref, bundle=text, imported=True, actor=actor)
    except SignatureInvalid as exc:
        raise SignatureInvalid(f"{sig_file}: {exc.message}", hint=exc.hint) from exc


def check_version(reg: RegistryAPI, ref: str, key_names: Sequence[str] | None = None
                  ) -> SignatureReport:
    return reg.signatures.check(ref, keys=key_names)


def verify_version(reg: RegistryAPI, version: Version, key_names: Sequence[str] | None = None
                   ) -> tuple[bool, str]:
    """For the `signature` gate: is VERSION validly signed by one of KEY_NAMES (by default
    the policy's trusted keys; none named: any registered key)? Never raises for an
    unsigned or untrusted version (the answer says why)."""
    try:
        r = reg.signatures.check(f"{version.model}@{version.id}", keys=key_names)
    except ModelvcError as exc:
        return False, exc.message
    return r.ok, r.message


def export_signature(reg: RegistryAPI, ref: str, dest: Path, *, key: str | None = None
                     ) -> tuple[Path, str]:
    """Write a valid signature of REF as a model-signing bundle: DEST/model.sig when DEST
    is a folder (a checkout), else DEST itself. Without `key` the version must have valid
    signatures by one key only. Returns the file written and the key's name."""
    r = reg.signatures.check(ref, keys=[])
    v = r.version
    wanted = reg.keys.get(key).id if key else None
    ok = [c for c in r.checks if c.status == "valid" and wanted in (None, c.key_id)]
    if not ok:
        raise NotFound(f"{v.model}@v{v.number} has no valid signature"
                       + (f" by key {key}" if key else ""),
                       hint=f"sign it first: `modelvc sign {ref} --key KEYFILE`")
    signers = sorted({c.key for c in ok})
    if len(signers) > 1:  # a bundle carries one signature: which one must be said
        raise UsageError(f"{v.model}@v{v.number} has valid signatures by {len(signers)} keys: "
                         + ", ".join(signers),
                         hint="choose one with --key NAME")
    at = f"{v.model}@{v.id}"
    text = next(s.signature for s in reg.signatures.list(at) if s.key_id == ok[0].key_id)
    dest = Path(dest)
    path = dest / bundle.SIGNATURE_NAME if dest.is_dir() else dest
    atomic_write(path, text.encode(), mode=0o644)
    return path, ok[0].key
