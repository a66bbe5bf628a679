"""RegistryAPI: the one interface every front end (CLI, server routes, web UI, gates,
serving, fleet) uses. `Registry.open(path)` (embedded: SQLite or PostgreSQL metadata,
local or S3 objects) and `Registry.open("http://...", token=...)` (a `modelvc server`)
both return one; mypy checks both implementations against these Protocols, and
tests/conformance runs every verb on both.

Conventions: the operands a verb acts on are positional (a ref, a model, a channel);
everything else is keyword-only. Results are the frozen dataclasses of modelvc.records
(re-exported by modelvc.api). `actor` names who acts on the embedded registry (default:
the local author); a server records its token's subject instead and ignores it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..records import (
    UNSET,
    AuditRecord,
    Delivery,
    DeliveryReport,
    Deployment,
    FileStorage,
    GateReport,
    GateRun,
    PolicyChange,
    PolicyInfo,
    Ref,
    RefMove,
    Replica,
    RoleBinding,
    Signature,
    SignatureReport,
    SigningKey,
    Token,
    Unset,
    Version,
    Webhook,
    WebhookStatus,
)

if TYPE_CHECKING:
    from concurrent.futures import Future
    from types import TracebackType

    from ..checkout import CheckoutResult, TensorDict
    from ..diff import VersionDiff
    from ..maintenance import GcReport, VerifyReport
    from ..manifest import Manifest


class KeysAPI(Protocol):
    """Public signing keys (private keys never enter the registry). Admin-free, audited."""

    def add(self, name: str, *, public_key: str | bytes, actor: str | None = None
            ) -> SigningKey: ...

    def get(self, name_or_id: str) -> SigningKey: ...

    def list(self) -> builtins.list[SigningKey]: ...

    def revoke(self, name: str, *, reason: str = "", actor: str | None = None
               ) -> SigningKey: ...


class SignaturesAPI(Protocol):
    """OpenSSF model-signing bundles over versions."""

    def add(self, ref: str, *, bundle: str, imported: bool = False,
            actor: str | None = None) -> Signature:
        """Store BUNDLE for REF after checking it verifies with a registered, unrevoked
        key and lists exactly the version's files (SignatureInvalid otherwise)."""
        ...

    def list(self, ref: str) -> builtins.list[Signature]: ...

    def check(self, ref: str, *, keys: Sequence[str] | None = None) -> SignatureReport:
        """Every stored signature checked; `ok` if one is valid by a trusted key (KEYS,
        default: the applied policy's trusted keys; none: any registered key)."""
        ...


class GatesAPI(Protocol):
    """The promotion policy and the gate runs promotion checks."""

    def run(self, ref: str, *, channel: str, policy: str | None = None,
            data: str | None = None, actor: str | None = None) -> GateReport:
        """Run CHANNEL's gates on REF and record the run. `policy`: a policy's text to
        take the gates from instead of the applied one. Over a server the gates run
        there (`data` is a path on the server; `policy`/`data` need the admin role)."""
        ...

    def runs(self, ref: str, *, channel: str | None = None) -> builtins.list[GateRun]: ...

    def report(self, ref: str, *, run_id: int) -> dict[str, Any]:
        """The full stored report of gate run RUN_ID of REF."""
        ...

    def policy(self) -> PolicyInfo | None:
        """The applied policy (None: every actor may promote and roll back)."""
        ...

    def apply_policy(self, text: str, *, source: str = "<policy>",
                     actor: str | None = None) -> PolicyChange: ...


class TokensAPI(Protocol):
    """API tokens of a server (admins). The secret is returned once, at creation."""

    def create(self, name: str, *, subject: str, scopes: Sequence[str] = (),
               expires_in_seconds: float | None = None, actor: str | None = None
               ) -> tuple[str, Token]: ...

    def list(self, *, subject: str | None = None) -> builtins.list[Token]: ...

    def revoke(self, token_id: str, *, actor: str | None = None) -> Token: ...


class RolesAPI(Protocol):
    """Role bindings: reader < writer < promoter < admin, per model, glob or '*'."""

    def grant(self, subject: str, role: str, *, on: str, actor: str | None = None
              ) -> RoleBinding: ...

    def revoke(self, subject: str, *, on: str, actor: str | None = None) -> None: ...

    def list(self, *, subject: str | None = None) -> builtins.list[RoleBinding]: ...


class EventsAPI(Protocol):
    """Webhooks: audit entries delivered in order, at least once (admin on '*')."""

    def add(self, url: str, *, secret: str, events: Sequence[str] = (),
            actor: str | None = None) -> Webhook: ...

    def remove(self, webhook_id: int, *, actor: str | None = None) -> None: ...

    def hooks(self) -> builtins.list[Webhook]: ...

    def status(self) -> builtins.list[WebhookStatus]: ...

    def pending(self, hook: Webhook) -> int:
        """Events waiting for HOOK."""
        ...

    def log(self, *, webhook_id: int | None = None) -> builtins.list[Delivery]: ...

    def deliver(self, *, wait: float = 0.0) -> DeliveryReport: ...


class DeploymentsAPI(Protocol):
    """Fleet deployments (desired state) and the gateways that reported in. Rollouts
    are driven by `modelvc deploy` (fleet.controller) where the metadata is."""

    def create(self, name: str, *, model: str, channel: str = "production",
               strategy: str = "atomic", selector: dict[str, str] | None = None,
               actor: str | None = None) -> Deployment: ...

    def get(self, name: str) -> Deployment: ...

    def list(self, *, model: str | None = None) -> builtins.list[Deployment]: ...

    def delete(self, name: str, *, actor: str | None = None) -> None: ...

    def replicas(self, *, model: str | None = None) -> builtins.list[Replica]: ...


class RunAPI(Protocol):
    """What `reg.run(...)` returns (modelvc.api.run.Run on both registries): a training
    run committing checkpoints to its branch."""

    id: str
    versions: builtins.list[Version]  # committed so far, in step order
    best_version: Version | None

    def commit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               folder: str | Path | None = None) -> Version: ...

    def submit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               files: Mapping[str, bytes] | None = None,
               folder: str | Path | None = None) -> Future[Version]: ...

    def wait(self) -> None: ...

    def finish(self) -> Version | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> RunAPI: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class RegistryAPI(Protocol):
    """A model registry: versions, refs (branches, channels, tags) and their history,
    governance (gates, keys, signatures, tokens, roles), events and deployments."""

    @property
    def location(self) -> str:
        """The registry folder, or the server URL."""
        ...

    @property
    def keys(self) -> KeysAPI: ...

    @property
    def signatures(self) -> SignaturesAPI: ...

    @property
    def gates(self) -> GatesAPI: ...

    @property
    def tokens(self) -> TokensAPI: ...

    @property
    def roles(self) -> RolesAPI: ...

    @property
    def events(self) -> EventsAPI: ...

    @property
    def deployments(self) -> DeploymentsAPI: ...

    def close(self) -> None: ...

    def __enter__(self) -> RegistryAPI: ...

    def __exit__(self, *exc: object) -> None: ...

    def whoami(self) -> dict[str, Any]:
        """Who acts: {"name": ...} (and, over a server, the token's roles)."""
        ...

    # ---- versions
    def commit(self, path: str | Path, *, model: str, branch: str | None = None,
               message: str = "", params: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, tags: Sequence[str] = (),
               parent: str | None = None, data: Sequence[str | Path] = (),
               author: str | None = None, cwd: str | Path | None = None,
               progress: Callable[[int, int], None] | None = None,
               lineage: dict[str, Any] | None = None, root: bool = False) -> Version:
        """`lineage`: entries added to the captured lineage (git, data, env), such as
        `derived_from`; a key the capture sets is refused (UsageError). A BRANCH that
        does not exist yet starts at `parent`, else at the main branch's head, else (or
        with `root=True`) as a version with no parent; `root` on an existing branch, or
        with `parent`, is a UsageError."""
        ...

    def commit_files(self, files: Mapping[str, Any], *, model: str, branch: str | None = None,
                     message: str = "", params: dict[str, Any] | None = None,
                     metrics: dict[str, Any] | None = None, tags: Sequence[str] = (),
                     parent: str | None = None, data: Sequence[str | Path] = (),
                     author: str | None = None, cwd: str | Path | None = None,
                     lineage: dict[str, Any] | None = None, root: bool = False) -> Version:
        """`commit` of files held in memory: FILES maps a path in the version to bytes or
        to a state dict (name -> torch tensor or numpy array), stored as a safetensors
        file (tensors in name order; never pickled). No file is written or read: a
        training loop's checkpoint. Over a server `author` is the token's subject."""
        ...

    def run(self, *, model: str, branch: str, params: Mapping[str, Any] | None = None,
            data: Sequence[str | Path] = (), parent: str | None = None,
            best: str | None = None, mode: str = "min", best_tag: str | None = None,
            run_id: str | None = None, files: Mapping[str, bytes] | None = None,
            staging: str | Path | None = None, max_pending: int = 2,
            isolate: bool = True) -> RunAPI:
        """A training run on MODEL@BRANCH: `with reg.run(...) as run: run.commit(state_dict,
        step=..., metrics=...)` commits each checkpoint with `commit_files`; on a clean
        exit the best version by metric BEST (MODE min or max) is tagged BEST_TAG
        (default `<branch>-best`). `run.submit(folder=...)` stages a saved checkpoint
        folder (under STAGING) and commits it in the background, up to MAX_PENDING
        waiting: on an embedded registry in a child process at the lowest CPU priority
        (ISOLATE; False: on the run's thread). The first checkpoint's parent is PARENT
        (the base being fine-tuned), else BRANCH's head, else none: on a new branch a
        run trains from scratch unless PARENT says otherwise. See modelvc.api.run."""
        ...

    def amend(self, model: str, *, branch: str | None = None, parent: str | None = None,
              add: Mapping[str, bytes | Path] | None = None, delete: Sequence[str] = (),
              delete_folders: Sequence[str] = (), message: str = "",
              author: str | None = None) -> Version:
        """A new version on BRANCH: its head's files (or `parent`'s, which must be the
        head: RefMoved otherwise) with ADD (path -> bytes, or a local file) written and DELETE /
        DELETE_FOLDERS removed, without a checkout: kept files reuse their objects, so
        a README edit to a large model stores and sends O(KB). Over a server `author`
        is the token's subject."""
        ...

    def resolve(self, ref: str, *, deleted: bool = False) -> Version: ...

    def manifest(self, ref: str) -> Manifest: ...

    def storage(self, ref: str) -> list[FileStorage]:
        """Each file of REF (manifest order): raw bytes, the stored bytes of its
        objects and their codecs."""
        ...

    def models(self) -> list[str]: ...

    def versions(self, model: str) -> list[Version]: ...

    def log(self, ref: str) -> list[Version]: ...

    def diff(self, a: str, b: str, *, numeric: bool = True,
             progress: Callable[[int, int], None] | None = None) -> VersionDiff: ...

    def checkout(self, ref: str, dest: str | Path, *, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> CheckoutResult: ...

    def load(self, ref: str, *, framework: str = "numpy", file: str | None = None
             ) -> TensorDict: ...

    def delete(self, ref: str, *, reason: str = "", actor: str | None = None) -> int: ...

    # ---- refs
    def refs(self, model: str, *, kind: str | None = None) -> list[Ref]: ...

    def history(self, model: str, *, name: str | None = None) -> list[RefMove]: ...

    def at(self, model: str, name: str, *, when: datetime) -> Version | None: ...

    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> Ref: ...

    def delete_ref(self, model: str, name: str, *, actor: str | None = None,
                   reason: str = "") -> None: ...

    def tag(self, ref: str, name: str, *, actor: str | None = None) -> Ref: ...

    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                expected: str | Unset | None = UNSET, force: bool = False,
                create: bool = False) -> Ref:
        """A channel that does not exist yet is refused unless `create=True` (or the
        applied policy declares it): a typo must not make a new channel."""
        ...

    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> Ref: ...

    # ---- audit and maintenance
    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRecord]:
        """The trail, oldest first, filtered. Paging by entry id: only entries after
        AFTER and before BEFORE, at most LIMIT of them (with `newest`: the LIMIT newest
        of those, still oldest first)."""
        ...

    def verify_audit(self) -> list[str]: ...

    def stats(self, *, model: str | None = None) -> dict[str, Any]: ...

    def verify(self, *, progress: Callable[[int, int], None] | None = None) -> VerifyReport: ...

    def gc(self, *, dry_run: bool = True, grace_seconds: float = 3600.0,
           progress: Callable[[int, int], None] | None = None) -> GcReport: ...


AREAS: dict[str, type] = {"keys": KeysAPI, "signatures": SignaturesAPI, "gates": GatesAPI,
                          "tokens": TokensAPI, "roles": RolesAPI, "events": EventsAPI,
                          "deployments": DeploymentsAPI}  # RegistryAPI's sub-objects


def verbs() -> builtins.list[str]:
    """Every verb of RegistryAPI as written on a registry: "commit", "keys.add", ...
    (docs/api.md lists them; tests/conformance covers each)."""

    def public(cls: type) -> builtins.list[str]:
        return [n for n, v in vars(cls).items()
                if not n.startswith("_") and callable(v) and not isinstance(v, property)]

    return public(RegistryAPI) + [f"{a}.{n}" for a, cls in AREAS.items() for n in public(cls)]
