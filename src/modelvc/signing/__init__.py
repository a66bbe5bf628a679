"""Signed versions: ECDSA keys, OpenSSF model-signing bundles, and the trust policy.

A signature is a model-signing (`key` method) bundle over the version's per-file sha256
list, bound to the version id; see docs/signing.md.

The names below load on first use (PEP 562): `modelvc.signing.trust`, which every
checkout asks, must not pull in ops.py and the cryptography package with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..records import SignatureCheck as SigCheck
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
    from .trust import Trust, TrustSettings, parse_policy

_WHERE = {
    **dict.fromkeys(("check_version", "create_key", "export_signature", "import_signature",
                     "register_key", "revoke_key", "sign_version", "verify_version"), "ops"),
    **dict.fromkeys(("Trust", "TrustSettings", "parse_policy"), "trust"),
}


def __getattr__(name: str) -> Any:
    if name == "SigCheck":  # modelvc.records.SignatureCheck, by its name here
        from ..records import SignatureCheck

        return SignatureCheck
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)


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
