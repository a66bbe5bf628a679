"""The public Registry API: `RegistryAPI` (a Protocol, with one sub-object per area) and
its result types. `modelvc.Registry.open(path or URL, token=...)` returns one.

    from modelvc import Registry
    from modelvc.api import RegistryAPI, Version

Light on purpose: importing it loads no numpy, SQLAlchemy or HTTP client, and its names
load on first use (the package root imports `api.openers` at every start of the CLI; a
one-shot `modelvc commit` needs a few of the records and none of the Protocols).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_PROTOCOL = frozenset({"AREAS", "DeploymentsAPI", "EventsAPI", "GatesAPI", "KeysAPI",
                       "RegistryAPI", "RolesAPI", "RunAPI", "SignaturesAPI", "TokensAPI",
                       "verbs"})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(".protocol" if name in _PROTOCOL else "..records", __name__)
    value = getattr(mod, name)
    globals()[name] = value  # once: later lookups find it as a module attribute
    return value
