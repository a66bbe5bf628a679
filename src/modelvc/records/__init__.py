"""The public result types of the Registry API: frozen dataclasses, re-exported by
modelvc.api (and modelvc.api.types, where they lived before).

Every verb of `RegistryAPI` returns these, on the embedded registry and over HTTP alike
(the server sends them as JSON, the client decodes them back into the same classes).
They sit in the bottom layer and import nothing from modelvc: the metadata layer builds
these records directly from its rows (so a row never leaks out as anything but one of
them), and the manifest, gates, signing and fleet use them, all below modelvc.api.

Every record is importable from here. Those every command uses (versions, refs, the
audit trail) are defined in core.py; those of the other areas (gates and policies,
signing, webhooks, tokens and roles, the fleet) in areas.py, imported when one of them is
first asked for (PEP 562): a frozen dataclass costs ~0.6 ms to create, and a one-shot
`modelvc log`, `commit` or `checkout` used none of those 17 (~10 ms of its start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import (
    UNSET,
    AuditRecord,
    FileStorage,
    Ref,
    RefKind,
    RefMove,
    SignatureStatus,
    Unset,
    Version,
    finite,
    previous_target,
)

if TYPE_CHECKING:
    from .areas import (
        Delivery,
        DeliveryReport,
        Deployment,
        GateReport,
        GateResult,
        GateRun,
        PolicyChange,
        PolicyInfo,
        Replica,
        RoleBinding,
        Signature,
        SignatureCheck,
        SignatureReport,
        SigningKey,
        Token,
        Webhook,
        WebhookStatus,
    )

__all__ = [
    "UNSET", "AuditRecord", "Delivery", "DeliveryReport", "Deployment", "FileStorage",
    "GateReport", "GateResult", "GateRun", "PolicyChange", "PolicyInfo", "Ref",
    "RefKind", "RefMove", "Replica", "RoleBinding", "Signature", "SignatureCheck",
    "SignatureReport", "SignatureStatus", "SigningKey", "Token", "Unset", "Version",
    "Webhook", "WebhookStatus", "finite", "previous_target",
]

# The names areas.py defines.
AREAS = frozenset({
    "Delivery", "DeliveryReport", "Deployment", "GateReport", "GateResult", "GateRun",
    "PolicyChange", "PolicyInfo", "Replica", "RoleBinding", "Signature",
    "SignatureCheck", "SignatureReport", "SigningKey", "Token", "Webhook",
    "WebhookStatus",
})


def __getattr__(name: str) -> Any:
    if name not in AREAS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import areas

    value = getattr(areas, name)
    globals()[name] = value  # once: later lookups find it as a module attribute
    return value
