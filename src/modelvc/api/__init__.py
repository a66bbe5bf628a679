"""The public Registry API: `RegistryAPI` (a Protocol, with one sub-object per area) and
its result types. `modelvc.Registry.open(path or URL, token=...)` returns one.

    from modelvc import Registry
    from modelvc.api import RegistryAPI, Version

Light on purpose: importing it loads no numpy, SQLAlchemy or HTTP client.
"""

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
    SigningKey,
    Token,
    Unset,
    Version,
    Webhook,
    WebhookStatus,
)
from .protocol import (
    AREAS,
    DeploymentsAPI,
    EventsAPI,
    GatesAPI,
    KeysAPI,
    RegistryAPI,
    RolesAPI,
    RunAPI,
    SignaturesAPI,
    TokensAPI,
    verbs,
)

__all__ = [
    "AREAS", "UNSET", "AuditRecord", "Delivery", "DeliveryReport", "Deployment",
    "DeploymentsAPI", "EventsAPI", "FileStorage", "GateReport", "GateResult", "GateRun", "GatesAPI",
    "KeysAPI", "PolicyChange", "PolicyInfo", "Ref", "RefKind", "RefMove", "RegistryAPI",
    "Replica", "RoleBinding", "RolesAPI", "RunAPI", "Signature", "SignatureCheck",
    "SignatureReport", "SignaturesAPI", "SigningKey", "Token", "TokensAPI", "Unset", "Version",
    "Webhook", "WebhookStatus", "verbs",
]
