"""MetaStore's trust area: signing keys, signatures of versions, and the applied
policies (every change audited in its own transaction)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import AlreadyExists, NotFound
from ..records import Signature, SigningKey
from .api import AuditEntry
from .area import Area
from .governance import append_audit
from .rows import now, utc
from .schema import policies, signatures, signing_keys


class KeysArea(Area):
    def add_key(self, key: SigningKey, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            if conn.execute(sa.select(signing_keys.c.id).where(
                    (signing_keys.c.id == key.id) | (signing_keys.c.name == key.name))).first():
                raise AlreadyExists(f"a key named {key.name!r} or with id {key.id[:12]} exists")
            conn.execute(sa.insert(signing_keys).values(**vars(key)))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def list_keys(self) -> list[SigningKey]:
        def tx(conn: sa.Connection) -> list[SigningKey]:
            return [_key(r) for r in conn.execute(sa.select(signing_keys).order_by(
                signing_keys.c.name))]

        return list(self._tx(tx))

    def get_key(self, name_or_id: str) -> SigningKey:
        def tx(conn: sa.Connection) -> SigningKey:
            r = conn.execute(sa.select(signing_keys).where(
                (signing_keys.c.name == name_or_id) | (signing_keys.c.id == name_or_id))).first()
            if r is None:
                raise NotFound(f"no signing key {name_or_id!r}",
                               hint="list keys with `modelvc key list`")
            return _key(r)

        key: SigningKey = self._tx(tx)
        return key

    def revoke_key(self, key_id: str, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.update(signing_keys).where(signing_keys.c.id == key_id)
                         .values(revoked_at=now()))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def add_signature(self, sig: Signature, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.delete(signatures).where(
                (signatures.c.version_id == sig.version_id) & (signatures.c.key_id == sig.key_id)))
            conn.execute(sa.insert(signatures).values(**vars(sig)))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def signatures(self, version_id: str) -> list[Signature]:
        def tx(conn: sa.Connection) -> list[Signature]:
            q = sa.select(signatures).where(signatures.c.version_id == version_id)
            return [Signature(r.version_id, r.key_id, r.signature, utc(r.signed_at), r.signer)
                    for r in conn.execute(q)]

        return list(self._tx(tx))

    # --- policy
    def put_policy(self, digest: str, body: str, actor: str, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.insert(policies).values(digest=digest, body=body, applied_at=now(),
                                                    applied_by=actor))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def current_policy(self) -> tuple[str, str] | None:
        """(digest, body) of the newest applied policy, or None."""
        def tx(conn: sa.Connection) -> tuple[str, str] | None:
            r = conn.execute(sa.select(policies.c.digest, policies.c.body)
                             .order_by(policies.c.id.desc()).limit(1)).first()
            return None if r is None else (r.digest, r.body)

        result: tuple[str, str] | None = self._tx(tx)
        return result

def _key(r: Any) -> SigningKey:
    return SigningKey(r.id, r.name, r.public_key, utc(r.created_at), r.created_by,
                      utc(r.revoked_at) if r.revoked_at else None)
