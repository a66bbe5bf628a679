"""`modelvc.api.types`, kept for code that imports the result types from here: they are
defined in modelvc.records, below every layer that uses them."""

from ..records import (
    UNSET,
    AuditRecord,
    Delivery,
    DeliveryReport,
    Deployment,
    FileStorage,
    GateReport,
    GateResult,
    GateRun,
    PolicyChange,
    PolicyInfo,
    Ref,
    RefKind,
    RefMove,
    Replica,
    RoleBinding,
    Signature,
    SignatureCheck,
    SignatureReport,
    SignatureStatus,
    SigningKey,
    Token,
    Unset,
    Version,
    Webhook,
    WebhookStatus,
)

__all__ = [
    "UNSET", "AuditRecord", "Delivery", "DeliveryReport", "Deployment", "FileStorage",
    "GateReport", "GateResult", "GateRun", "PolicyChange", "PolicyInfo", "Ref", "RefKind",
    "RefMove", "Replica", "RoleBinding", "Signature", "SignatureCheck", "SignatureReport",
    "SignatureStatus", "SigningKey", "Token", "Unset", "Version", "Webhook", "WebhookStatus",
]
