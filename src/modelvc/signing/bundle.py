"""The OpenSSF model-signing signature format (v1.0 predicate, `key` method), our own code.

A signature is a Sigstore bundle (media type v0.3) holding a DSSE envelope whose
payload is an in-toto statement: one subject (the model name, digest = sha256 over the
concatenated per-file digests in resource order) and a predicate listing every file
with its sha256 (`resources`) and how the folder was serialized. The DSSE signature is
ECDSA over the PAE encoding of the payload.

modelvc adds a `modelvc` member to the predicate (model-signing verifiers ignore
members they do not know) that binds the signature to the version id, i.e. the BLAKE3
of the manifest, so a modelvc signature covers the lineage too. A bundle made by the
model_signing tool has no such member; it binds to a version through its file list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import SignatureInvalid, UsageError
from ..manifest import Manifest
from . import keys

MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SIGNATURE_NAME = "model.sig"
# What model-signing leaves out of a folder by default: the signature and git metadata,
# each only at the top level of the folder.
IGNORED = (".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_NAME)


def pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually signs."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload),
                                     payload)


def signed_files(m: Manifest) -> dict[str, str]:
    """resource name -> sha256 of the files a model-signing signature of M lists.

    A one-file version is signed as model-signing signs a file path: one resource `.`.
    """
    if m.kind == "file" and len(m.files) == 1:
        return {".": m.files[0].sha256}
    return {f.path: f.sha256 for f in m.files if PurePosixPath(f.path).parts[0] not in IGNORED}


def _order(names: dict[str, str]) -> list[str]:
    # model-signing sorts its items as paths (by component), not as strings.
    return sorted(names, key=lambda n: PurePosixPath(n).parts)


def root_digest(resources: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def statement(m: Manifest, version_id: str) -> dict[str, Any]:
    files = signed_files(m)
    resources = [{"name": n, "algorithm": "sha256", "digest": files[n]} for n in _order(files)]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": m.model, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256",
                              "allow_symlinks": False, "ignore_paths": list(IGNORED)},
            "resources": resources,
            "modelvc": {"version": version_id, "model": m.model},
        },
    }


def make(key: ec.EllipticCurvePrivateKey, stmt: dict[str, Any]) -> str:
    """Sign STMT and wrap it as a model-signing bundle (JSON text)."""
    payload = json.dumps(stmt, indent=2, sort_keys=True).encode()
    pem = keys.public_pem(key.public_key())
    return json.dumps({
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": keys.key_id(pem)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(keys.sign(key, pae(payload))).decode(),
                            "keyid": ""}],
        },
    }, indent=2)


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle; `payload` is authenticated only after `verify` returned True."""

    hint: str | None
    payload: bytes
    signature: bytes

    @classmethod
    def parse(cls, text: str | bytes) -> Bundle:
        try:
            d = json.loads(text)
            if d.get("mediaType") != MEDIA_TYPE:
                raise UsageError(f"not a model-signing key bundle (media type "
                                 f"{d.get('mediaType')!r}, expected {MEDIA_TYPE})")
            env = d["dsseEnvelope"]
            if env.get("payloadType") != PAYLOAD_TYPE:
                raise UsageError(f"unexpected DSSE payload type {env.get('payloadType')!r}")
            if len(env["signatures"]) != 1:
                raise UsageError("expected exactly one DSSE signature in the bundle")
            hint = (d.get("verificationMaterial", {}).get("publicKey") or {}).get("hint")
            return cls(hint or None, base64.b64decode(env["payload"], validate=True),
                       base64.b64decode(env["signatures"][0]["sig"], validate=True))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise SignatureInvalid(f"malformed signature bundle: {exc}") from exc

    def verify(self, key: ec.EllipticCurvePublicKey) -> bool:
        return keys.verify(key, self.signature, pae(self.payload))

    def statement(self) -> dict[str, Any]:
        """The in-toto statement, checked for shape and internal consistency."""
        try:
            s = json.loads(self.payload)
            pred = s["predicate"]
            ok = (s["_type"] == STATEMENT_TYPE and s["predicateType"] == PREDICATE_TYPE
                  and len(s["subject"]) == 1)
            if not ok:
                raise SignatureInvalid("the signed statement is not a model-signing v1.0 "
                                       "statement")
            ser = pred["serialization"]
            if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
                raise SignatureInvalid(
                    f"the signature hashes with {ser.get('method')}/{ser.get('hash_type')}; "
                    "modelvc binds signatures to per-file sha256",
                    hint="sign with model_signing's default file serialization (sha256)")
            if s["subject"][0]["digest"]["sha256"] != root_digest(pred["resources"]):
                raise SignatureInvalid("the signed statement is inconsistent: its root "
                                       "digest does not match its resources")
            return dict(s)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SignatureInvalid(f"malformed signed statement: {exc}") from exc


def mismatch(stmt: dict[str, Any], m: Manifest, version_id: str) -> str | None:
    """Why STMT does not describe this version (None: it does)."""
    pred = stmt["predicate"]
    bound = pred.get("modelvc", {}).get("version") if isinstance(pred.get("modelvc"),
                                                                 dict) else None
    if bound is not None and bound != version_id:
        return f"it was made for version {str(bound)[:12]}, not {version_id[:12]}"
    signed = {r["name"]: r["digest"] for r in pred["resources"] if r["algorithm"] == "sha256"}
    have = signed_files(m)
    if signed == have:
        return None
    extra, missing = sorted(set(have) - set(signed)), sorted(set(signed) - set(have))
    changed = sorted(n for n in set(have) & set(signed) if have[n] != signed[n])
    parts = [f"{label}: {', '.join(names[:3])}" + (" ..." if names[3:] else "")
             for label, names in (("files not signed", extra), ("signed files missing",
                                  missing), ("files changed", changed)) if names]
    return "its file list differs from the version's (" + "; ".join(parts) + ")"
