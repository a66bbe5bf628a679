"""The records of the Registry API's areas besides versions and refs: gates and
policies, signing keys and signatures, webhooks and deliveries, tokens and roles, fleet
deployments and replicas. modelvc.records re-exports them and imports this module when
one of them is first asked for (a one-shot command on versions creates none of them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .core import SignatureStatus, Version, finite


@dataclass(frozen=True)
class GateRun:
    id: int
    version_id: str
    channel: str
    policy_digest: str
    passed: bool
    report_id: str
    summary: dict[str, Any]
    actor: str
    at: datetime


@dataclass(frozen=True)
class GateResult:
    """One check of one gate."""

    gate: str  # kind: metric, eval, regression, budget, format, signature
    name: str  # what was checked, e.g. "accuracy >= 0.9" or "size_mb"
    passed: bool
    measured: Any = None
    expected: Any = None
    message: str = ""
    line: int = 0  # the gate's line in the policy file

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "name": self.name, "passed": self.passed,
                "measured": finite(self.measured), "expected": finite(self.expected),
                "message": self.message, "line": self.line}


@dataclass(frozen=True)
class GateReport:
    """A channel's gates run on one version (stored as a blob, summarised in a run)."""

    model: str
    version: str
    number: int
    channel: str
    policy: str  # digest of the policy the gates came from
    applied: bool  # that policy is the registry's applied one (the run counts)
    actor: str
    at: datetime
    passed: bool
    results: list[GateResult]
    metrics: dict[str, Any]
    baseline: str | None
    data: dict[str, Any] | None
    seconds: float
    report_id: str = ""
    run_id: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": "modelvc.gate-report/1", "model": self.model,
                "version": self.version, "number": self.number, "channel": self.channel,
                "policy": self.policy, "applied": self.applied, "actor": self.actor,
                "at": self.at.isoformat(), "passed": self.passed,
                "results": [r.to_json() for r in self.results], "metrics": self.metrics,
                "baseline": self.baseline, "data": self.data,
                "seconds": round(self.seconds, 3), "report_id": self.report_id,
                "run_id": self.run_id, "notes": self.notes}


@dataclass(frozen=True)
class PolicyInfo:
    """The applied promotion policy, as it was written."""

    digest: str
    body: str


@dataclass(frozen=True)
class PolicyChange:
    digest: str
    changed: bool  # False: that policy was already the applied one


@dataclass(frozen=True)
class SigningKey:
    id: str
    name: str
    public_key: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class Signature:
    version_id: str
    key_id: str
    signature: str  # an OpenSSF model-signing bundle (JSON)
    signed_at: datetime
    signer: str


@dataclass(frozen=True)
class SignatureCheck:
    """One stored signature of a version, checked."""

    key: str  # key name, or key id when the key is unknown
    key_id: str
    signer: str
    status: SignatureStatus
    detail: str


@dataclass(frozen=True)
class SignatureReport:
    """Every stored signature of a version checked against the trusted keys."""

    version: Version
    ok: bool  # one valid signature by a trusted, unrevoked key
    message: str
    trusted: list[str]  # the keys asked for (empty: any registered key)
    checks: list[SignatureCheck]


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    secret: str  # "" when read over HTTP: it was shown once, when the hook was added
    events: list[str]
    cursor: int
    created_at: datetime
    active: bool


@dataclass(frozen=True)
class WebhookStatus:
    webhook: Webhook
    pending: int  # events waiting for it


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: int
    audit_id: int
    attempt: int
    at: datetime
    status: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failed_attempts: int
    pending: dict[int, int]  # webhook id -> events waiting

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())

    def to_json(self) -> dict[str, object]:
        return {"delivered": self.delivered, "failed_attempts": self.failed_attempts,
                "pending": {str(k): v for k, v in self.pending.items()},
                "total_pending": self.total_pending}


@dataclass(frozen=True)
class Token:
    """An API token (never its secret: only its sha256 is stored)."""

    id: str
    name: str
    subject: str
    scopes: list[str]  # "ROLE:PATTERN" caps on what the token may do; ["admin:*"]: no cap
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class RoleBinding:
    subject: str
    scope: str  # model name, glob ("team-*") or "*"
    role: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Deployment:
    """A fleet deployment: desired state (which channel a set of gateways follows) and
    where its two-phase switch stands."""

    name: str
    model: str
    channel: str
    strategy: str
    selector: dict[str, str]
    version_id: str | None
    previous_id: str | None
    epoch: int
    pending_id: str | None
    pending_epoch: int | None
    members: list[str]
    state: str  # new | staging | rolling | flipped | done | converging | aborted
    reason: str
    created_at: datetime
    updated_at: datetime
    # rolling: replicas already told to serve pending_id; canary: the canary replicas
    rolled: list[str] | None = None
    # canary by share of traffic: every member serves pending_id to this share of keys
    share: float | None = None

    def target(self, replica_id: str) -> tuple[str | None, int]:
        """(version, epoch) `replica_id` should serve: during a rolling rollout, the
        pending version once its batch came (a canary keeps it while the rest stage);
        else the deployment's."""
        if self.state in ("rolling", "staging") and self.pending_id and \
                self.pending_epoch and replica_id in (self.rolled or ()):
            return self.pending_id, self.pending_epoch
        return self.version_id, self.epoch

    def selects(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.selector.items())


@dataclass(frozen=True)
class Replica:
    """A gateway of a fleet, as it last reported itself."""

    id: str
    model: str
    labels: dict[str, str] = field(default_factory=dict)
    address: str = ""
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    serving_id: str | None = None
    epoch: int = 0
    warm_id: str | None = None
    staged_id: str | None = None
    staged_epoch: int | None = None
    state: str = "starting"  # starting | serving | staging | staged | failed
    error: str | None = None
