"""Who may move which channel, and whether a version passed the channel's gates.

Without an applied policy every actor may promote and roll back (the embedded
single-user default); once a policy is applied it is enforced on every move:

- a channel listed under the model (or "*") is protected: promote and rollback need the
  channel's promoters (or roles.promoter) or an admin;
- promote also needs the newest gate run of that exact version id on that channel under
  the current policy digest to have passed (and, when the channel has regression gates,
  to have been run against what the channel holds now);
- --force skips the gates: admins only, with a reason, recorded as action "force".

Regression gates judge a version against what the channel held when they ran (the
run's baseline). Checking that the channel still holds it is not enough on its own: a
concurrent promotion may land between this check and the move. So
`authorize_promotion` returns a `Clearance` naming that baseline, and the move must be a
compare-and-swap from it (`Registry.promote(..., expected=clearance.baseline)`); if the
swap fails, `moved_since_gated` is the error to raise (re-run the gates, then promote).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import GateNotPassed, PermissionDenied, RefNotFound, UsageError
from ..meta.api import AuditEntry, VersionRow
from .policy import Policy, applied_policy

if TYPE_CHECKING:
    from ..meta.store import MetaStore


@dataclass(frozen=True)
class Clearance:
    """What `authorize_promotion` allowed.

    `pinned`: the channel has regression gates, so the move must start from `baseline`
    (the version the passed run's regression checks compared against; None: the
    channel was empty), i.e. be a compare-and-swap with `expected=baseline`, and must
    not be retried from a newer value. Unpinned (no policy, unprotected channel, no
    regression gates, --force): any current value will do."""

    pinned: bool = False
    baseline: str | None = None
    run_id: int | None = None  # the gate run that allowed it

    def expected(self, given: object) -> object:
        """The compare-and-swap's expected value, given the caller's (`given`: a
        version id, None, or Registry's UNSET sentinel). A caller's own expectation
        must agree with the baseline when pinned: refuse it otherwise."""
        if not self.pinned:
            return given
        if isinstance(given, str | None) and given != self.baseline:
            raise GateNotPassed(
                f"the promotion expects the channel to hold {_short(given)}, but its "
                f"regression gates compared against {_short(self.baseline)}",
                hint="re-run the gates against what the channel holds now, then promote")
        return self.baseline


class Authority:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    def policy(self) -> Policy | None:
        return applied_policy(self.meta)

    def declares(self, model: str, channel: str) -> bool:
        """Whether the applied policy names CHANNEL for MODEL (so it may be created)."""
        pol = self.policy()
        return pol is not None and pol.rule(model, channel) is not None

    def authorize_promotion(self, v: VersionRow, channel: str, actor: str, *, force: bool,
                            reason: str) -> Clearance:
        """Raise PermissionDenied / GateNotPassed unless this move is allowed; what the
        move must then start from (see Clearance)."""
        if force and not reason.strip():
            raise UsageError("--force needs a reason", hint="add -r 'why this skips the gates'")
        pol = self.policy()
        if pol is None:
            return Clearance()
        target = f"{v.model}@{channel}"
        if force:
            if not pol.is_admin(actor):
                raise PermissionDenied(
                    f"{actor} may not force {target}: --force needs the admin role",
                    hint="ask an admin (roles.admin in the policy), or pass the gates with "
                         f"`modelvc gate run {v.model}@v{v.number} --channel {channel}`")
            return Clearance()
        rule = pol.rule(v.model, channel)
        if rule is None:
            return Clearance()
        if not pol.may_move(actor, rule):
            raise PermissionDenied(f"{actor} may not promote to {target}",
                                   hint=f"promoters of {target}: {_who(pol, rule.promoters)}")
        if not rule.gates:
            return Clearance()
        return self._check_gates(v, channel, pol,
                                 any(g.kind == "regression" for g in rule.gates))

    def moved_since_gated(self, v: VersionRow, channel: str, clearance: Clearance
                          ) -> GateNotPassed:
        """The error for a pinned move whose compare-and-swap failed: the channel moved
        after the gates compared against its old value."""
        try:
            now: str | None = self.meta.get_ref(v.model, channel).version_id
        except RefNotFound:
            now = None
        label = f"{v.model}@v{v.number}"
        return GateNotPassed(
            f"{v.model}@{channel} moved while {label} was being promoted: its regression "
            f"gates compared against {_short(clearance.baseline)}, the channel now holds "
            f"{_short(now)}; nothing was moved",
            hint=f"run `modelvc gate run {label} --channel {channel}` again, then promote")

    def _check_gates(self, v: VersionRow, channel: str, pol: Policy, regression: bool
                     ) -> Clearance:
        label = f"{v.model}@v{v.number}"
        run_cmd = f"modelvc gate run {label} --channel {channel}"
        runs = [r for r in self.meta.gate_runs(v.id, channel) if pol.counts(r, v.model)]
        if not runs:
            older = self.meta.gate_runs(v.id, channel)
            why = (" under the current policy (earlier runs ran other gates: the policy "
                   "changed them since)") if older else ""
            raise GateNotPassed(f"{label} ({v.id[:12]}) has no gate run for {channel}{why}",
                                hint=f"run `{run_cmd}`")
        last = runs[-1]
        if not last.passed:
            failed = failed_text(last.summary)
            raise GateNotPassed(f"{label} failed the {channel} gates (run {last.id}: {failed})",
                                hint=f"fix the model and commit a new version, then `{run_cmd}`")
        if regression:
            try:
                now = self.meta.get_ref(v.model, channel).version_id
            except RefNotFound:
                now = None
            if last.summary.get("baseline") != now:
                raise GateNotPassed(
                    f"{v.model}@{channel} moved since {label} was gated (its regression "
                    "checks compared against another version)",
                    hint=f"run `{run_cmd}` again")
            return Clearance(pinned=True, baseline=now, run_id=last.id)
        return Clearance(run_id=last.id)

    def authorize_rollback(self, model: str, channel: str, actor: str) -> None:
        pol = self.policy()
        if pol is None:
            return
        rule = pol.rule(model, channel)
        if rule is not None and not pol.may_move(actor, rule):
            raise PermissionDenied(f"{actor} may not roll back {model}@{channel}",
                                   hint=f"promoters of {model}@{channel}: "
                                        f"{_who(pol, rule.promoters)}")

    def authorize_ref_delete(self, model: str, name: str, kind: str, actor: str) -> None:
        """Deleting a protected channel is a move: same roles as rollback. (For
        Registry.delete_ref, which does not call it yet.)"""
        if kind == "channel":
            self.authorize_rollback(model, name, actor)

    def apply_policy(self, new: Policy, actor: str) -> bool:
        """Record NEW as the registry's policy; False when it is already the applied one.

        Once a policy naming admins is applied, only those admins may replace it."""
        old = self.policy()
        if old is not None and old.admins and not old.is_admin(actor):
            raise PermissionDenied(f"{actor} may not change the policy: only admins may "
                                   f"({', '.join(sorted(old.admins))})",
                                   hint="ask an admin to apply it")
        if old is not None and old.digest == new.digest:
            return False
        self.meta.put_policy(new.digest, new.body, actor, AuditEntry(
            actor=actor, action="policy", target="policy",
            before={"digest": old.digest} if old else None,
            after={"digest": new.digest, "source": new.source}))
        return True


def _short(vid: str | None) -> str:
    return vid[:12] if vid else "an empty channel"


def _who(pol: Policy, promoters: frozenset[str] | None) -> str:
    allowed = promoters if promoters is not None else pol.promoters
    return ", ".join(sorted((allowed or frozenset()) | pol.admins)) or "nobody"


def failed_text(summary: dict[str, Any], limit: int = 3) -> str:
    """A failed run's first LIMIT failed checks, each with what it measured:
    "metric: acc >= 0.84 (measured 0.83)"."""
    out = []
    for row in summary.get("results", []):
        if len(row) >= 4 and not row[2]:
            measured = row[3]
            shown = f"{measured:.4g}" if isinstance(measured, float) else measured
            out.append(f"{row[0]}: {row[1]}" + ("" if measured is None
                                                 else f" (measured {shown})"))
    if not out:  # a run recorded before results were kept
        out = list(summary.get("failed", []))
    more = len(out) - limit
    return "; ".join(out[:limit]) + (f"; and {more} more" if more > 0 else "")
