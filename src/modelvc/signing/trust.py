"""Which keys are trusted, and whether a version carries a valid signature by one.

The trust section of the applied policy (`trust: {keys: [NAME, ...], require: BOOL}`)
decides. Once it is set, checkout and load verify a version's stored signatures and
refuse a tampered one; with `require: true` they also refuse a version without a valid
signature by a trusted, unrevoked key. An empty `keys` list trusts every registered,
unrevoked key. A stored signature that does not verify always refuses: signatures are
verified before they are stored, so a failing one means the registry was altered.

YAML and the cryptography package are imported where a policy or a signature is read:
a checkout in a registry without a policy loads neither (tests/cli/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import records
from ..errors import Corrupt, NotFound, SignatureInvalid, Untrusted, UsageError
from ..manifest import Manifest
from ..meta.api import VersionRow
from ..records import SignatureStatus

if TYPE_CHECKING:
    from ..meta.store import MetaStore
    from ..records import Signature, SignatureCheck, SigningKey

Status = SignatureStatus


@dataclass(frozen=True)
class TrustSettings:
    keys: tuple[str, ...] = ()
    require: bool = False
    present: bool = False  # the policy has a trust section


def parse_policy(body: str) -> TrustSettings:
    """The `trust` section of a policy file (YAML, or TOML)."""
    import tomllib

    import yaml  # only once a policy exists: a checkout without one never loads it

    try:
        doc: Any = yaml.safe_load(body)
    except yaml.YAMLError:
        try:
            doc = tomllib.loads(body)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"the applied policy is neither YAML nor TOML: {exc}") from exc
    section = doc.get("trust") if isinstance(doc, dict) else None
    if section is None:
        return TrustSettings()
    names, require = (section.get("keys", []), section.get("require", False)) if isinstance(
        section, dict) else (None, None)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError("policy `trust.keys` must be a list of key names")
    if not isinstance(require, bool):
        raise UsageError("policy `trust.require` must be true or false")
    return TrustSettings(tuple(names), require, present=True)


def _check_one(sig: Signature, key: SigningKey | None, m: Manifest, version_id: str,
               trusted: Sequence[str] | None) -> SignatureCheck:
    def out(status: Status, detail: str) -> SignatureCheck:
        return records.SignatureCheck(key.name if key else sig.key_id[:12], sig.key_id,
                                      sig.signer, status, detail)

    if key is None:
        return out("unknown-key", "signed by a key that is not registered")
    from . import keys  # cryptography: only where a signature is checked
    from .bundle import Bundle, mismatch

    try:
        b = Bundle.parse(sig.signature)
        if b.hint is not None and b.hint != key.id:
            return out("invalid", f"the bundle names key {b.hint[:12]}, not {key.name}")
        if not b.verify(keys.parse_public(key.public_key)):
            return out("invalid", f"the signature does not verify with key {key.name}")
        why = mismatch(b.statement(), m, version_id)
    except SignatureInvalid as exc:
        return out("invalid", exc.message)
    if why is not None:
        return out("invalid", f"the signature by {key.name} does not cover this version: {why}")
    if key.revoked_at is not None:
        return out("revoked", f"key {key.name} was revoked at {key.revoked_at:%Y-%m-%d %H:%M}")
    if trusted and key.name not in trusted and key.id not in trusted:
        return out("untrusted", f"key {key.name} is not among the trusted keys")
    return out("valid", f"valid signature by {key.name} ({sig.signer})")


def check_signatures(meta: MetaStore, m: Manifest, version_id: str,
                     trusted: Sequence[str] | None = None) -> list[SignatureCheck]:
    """Every stored signature of the version, verified (tampering shows as `invalid`)."""
    out = []
    for sig in meta.signatures(version_id):
        try:
            key: SigningKey | None = meta.get_key(sig.key_id)
        except NotFound:
            key = None
        out.append(_check_one(sig, key, m, version_id, trusted))
    return out


def decide(checks: Sequence[SignatureCheck], label: str, trusted: Sequence[str]) -> str:
    """The valid signature's description, or raise SignatureInvalid / Untrusted."""
    bad = [c for c in checks if c.status == "invalid"]
    if bad:
        raise SignatureInvalid(f"{label}: {bad[0].detail}",
                               hint="the registry or its signature was altered; re-sign from "
                                    "a trusted copy after finding out how")
    good = [c for c in checks if c.status == "valid"]
    if good:
        return good[0].detail
    wanted = ", ".join(trusted) if trusted else "any registered key"
    why = "; ".join(c.detail for c in checks) or "it is not signed"
    raise Untrusted(f"{label} has no valid signature by a trusted key ({wanted}): {why}",
                    hint=f"sign it: `modelvc sign {label} --key KEYFILE` with a trusted key")


class Trust:
    """Enforces the applied policy's trust section (Registry.trust)."""

    def __init__(self, meta: MetaStore, read_manifest: Callable[[str], Manifest]) -> None:
        self.meta = meta
        self.read_manifest = read_manifest
        self._cache: tuple[str | None, TrustSettings] | None = None

    def settings(self) -> TrustSettings:
        current = self.meta.current_policy()
        digest = current[0] if current else None
        if self._cache is None or self._cache[0] != digest:
            self._check_applied(digest)
            self._cache = (digest, parse_policy(current[1]) if current else TrustSettings())
        return self._cache[1]

    def _check_applied(self, digest: str | None) -> None:
        """The policy in force must be the one the audit trail last recorded applying:
        policies rows deleted or edited by SQL (a trust requirement switched off) are
        refused, not obeyed. (`audit verify` proves the trail itself unedited.)"""
        last = self.meta.audit_entries(action="policy", target="policy", newest=1)
        recorded = last[-1].after.get("digest") if last and last[-1].after else None
        if recorded != digest:
            raise Corrupt(f"the applied policy ({digest[:12] if digest else 'none'}) is not "
                          f"the one the audit trail last recorded "
                          f"({recorded[:12] if recorded else 'none'}): the policies table "
                          "was edited outside modelvc",
                          hint="run `modelvc audit verify`, then re-apply the policy from a "
                               "trusted copy (`modelvc policy apply`)")

    def check(self, v: VersionRow) -> None:
        """Under a trust policy, raise on a tampered signature and, if signatures are
        required, unless V has a valid trusted one."""
        s = self.settings()
        if s.require:
            self.verify(v, s.keys)
        elif s.present and self.meta.signatures(v.id):
            checks = check_signatures(self.meta, self.read_manifest(v.id), v.id, s.keys)
            bad = [c for c in checks if c.status == "invalid"]
            if bad:
                decide(bad, f"{v.model}@v{v.number}", s.keys)

    def verify(self, v: VersionRow, trusted: Sequence[str]) -> str:
        """Verify V's signatures (the manifest is re-hashed against the id on read)."""
        m = self.read_manifest(v.id)
        label = f"{v.model}@v{v.number}"
        return decide(check_signatures(self.meta, m, v.id, trusted), label, trusted)
