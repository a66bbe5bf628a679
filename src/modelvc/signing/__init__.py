"""Signed versions: ECDSA keys, OpenSSF model-signing bundles, and the trust policy.

A signature is a model-signing (`key` method) bundle over the version's per-file sha256
list, bound to the version id; see docs/signing.md.
"""

from __future__ import annotations

from .ops import (
    check_version,
    create_key,
    export_signature,
    import_signature,
    register_key,
    revoke_key,
    sign_version,
    verify_version,
)
from .trust import SigCheck, Trust, TrustSettings, parse_policy

__all__ = [
    "SigCheck",
    "Trust",
    "TrustSettings",
    "check_version",
    "create_key",
    "export_signature",
    "import_signature",
    "parse_policy",
    "register_key",
    "revoke_key",
    "sign_version",
    "verify_version",
]
