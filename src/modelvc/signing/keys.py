"""ECDSA key material: generate, load, identify, sign and verify raw bytes.

A key's id is the sha256 (hex) of its SubjectPublicKeyInfo PEM: exactly the
`verificationMaterial.publicKey.hint` that OpenSSF model-signing writes in a bundle, so
a bundle made by either tool names the registered key it needs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..atomic import storage_error
from ..errors import AlreadyExists, PathNotFound, UsageError

# The curves model-signing accepts, each with the digest it pairs with (Sigstore specs).
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def _check_curve(key: ec.EllipticCurvePublicKey) -> None:
    if key.curve.name not in _HASHES:
        raise UsageError(f"unsupported curve {key.curve.name}: use ECDSA P-256 or P-384")


def _ecdsa(key: ec.EllipticCurvePublicKey) -> ec.ECDSA:
    return ec.ECDSA(_HASHES[key.curve.name]())


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    """The canonical PEM text (what the key id hashes)."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()


def parse_public(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError("only ECDSA public keys are supported (model-signing `key` method)")
    _check_curve(key)
    return key


def load_private(path: Path, password: str | None = None) -> ec.EllipticCurvePrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise PathNotFound(f"no private key file {path}") from exc
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password is not None else None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a usable PEM private key ({exc})",
                         hint="pass --password if the key is encrypted") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{path}: only ECDSA private keys are supported")
    _check_curve(key.public_key())
    return key


def generate() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create PATH with MODE from the start (a private key is never readable by others,
    not even for an instant) and refuse to overwrite an existing key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise AlreadyExists(f"{path} already exists",
                            hint="choose another --out folder or key name") from exc
    except OSError as exc:
        raise storage_error(exc, path) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, _ecdsa(key.public_key()))


def verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, _ecdsa(key))
    except InvalidSignature:
        return False
    return True
