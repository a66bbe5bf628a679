"""Who may move a protected channel, and only with a passed gate for that exact version."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelvc.errors import GateNotPassed, PermissionDenied, UsageError
from modelvc.registry import Registry

from .conftest import POLICY, apply, commit


def _state(reg: Registry) -> tuple[object, int, int]:
    """What a refused move must leave unchanged: the channel, its history, the audit."""
    ref = reg._ref_or_none("m", "production")
    return (ref.version_id if ref else None, len(reg.history("m")), len(reg.audit()))


def test_no_policy_allows_everything(any_reg: Registry, tmp_path: Path) -> None:
    v = commit(any_reg, tmp_path, 0, 0.1)
    any_reg.promote(f"m@{v.id}", "production", actor="anyone", create=True)
    assert any_reg.resolve("m@production").id == v.id


def test_promotion_without_a_passed_gate_is_refused(any_reg: Registry, tmp_path: Path) -> None:
    v1 = commit(any_reg, tmp_path, 0, 0.95)
    apply(any_reg)
    before = _state(any_reg)
    with pytest.raises(GateNotPassed, match="no gate run for production"):
        any_reg.promote(f"m@{v1.id}", "production", actor="ci-bot", create=True)
    assert _state(any_reg) == before
    # A failed run does not count either.
    v2 = commit(any_reg, tmp_path, 1, 0.5)
    report = any_reg.gates.run(f"m@{v2.id}", channel="production", actor="ci-bot")
    assert not report.passed and not report.results[0].passed
    before = _state(any_reg)
    with pytest.raises(GateNotPassed, match="failed the production gates") as refused:
        any_reg.promote(f"m@{v2.id}", "production", actor="ci-bot")
    assert "(measured 0.5)" in refused.value.message  # what it measured, not just the rule
    assert _state(any_reg) == before
    # The passed run of v1 lets v1 (and only v1) through.
    assert any_reg.gates.run(f"m@{v1.id}", channel="production", actor="ci-bot").passed
    any_reg.promote(f"m@{v1.id}", "production", actor="ci-bot")
    assert any_reg.resolve("m@production").id == v1.id


def test_a_gate_passed_by_another_version_does_not_count(any_reg: Registry,
                                                         tmp_path: Path) -> None:
    apply(any_reg)
    v1 = commit(any_reg, tmp_path, 0, 0.95)
    v2 = commit(any_reg, tmp_path, 1, 0.97)
    assert any_reg.gates.run(f"m@{v1.id}", channel="production", actor="ci-bot").passed
    # v2 passed staging, not production: neither counts for v2 on production.
    assert any_reg.gates.run(f"m@{v2.id}", channel="staging", actor="ci-bot").passed
    before = _state(any_reg)
    with pytest.raises(GateNotPassed):
        any_reg.promote(f"m@{v2.id}", "production", actor="ci-bot", create=True)
    assert _state(any_reg) == before


def test_a_gate_passed_under_an_older_policy_does_not_count(any_reg: Registry,
                                                            tmp_path: Path) -> None:
    apply(any_reg)
    v = commit(any_reg, tmp_path, 0, 0.95)
    assert any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci-bot").passed
    apply(any_reg, POLICY.replace("accuracy >= 0.9", "accuracy >= 0.92"))
    with pytest.raises(GateNotPassed, match="the policy changed them since"):
        any_reg.promote(f"m@{v.id}", "production", actor="ci-bot", create=True)
    # Comments and layout are not meaning: re-indenting keeps the digest.
    pol = apply(any_reg, POLICY.replace("accuracy >= 0.9", "accuracy >= 0.92")
                + "# a comment\n")
    assert any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci-bot").policy == pol.digest


def test_a_policy_edit_elsewhere_keeps_a_run_counting(any_reg: Registry,
                                                      tmp_path: Path) -> None:
    """Another model's gates, roles, promoters: not what m's production run checked."""
    apply(any_reg)
    v = commit(any_reg, tmp_path, 0, 0.95)
    assert any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci-bot").passed
    other = POLICY.replace("promoter: [bob, ci-bot]", "promoter: [bob, ci-bot, carol]") + (
        "  other:\n    channels:\n      production:\n        gates:\n"
        "          - metric: \"accuracy >= 0.99\"\n")
    apply(any_reg, other.replace("accuracy >= 0.5", "accuracy >= 0.6"))  # m@staging too
    any_reg.promote(f"m@{v.id}", "production", actor="ci-bot", create=True)
    assert any_reg.resolve("m@production").id == v.id
    # m's staging gates changed: a staging run from before would not count
    assert any_reg.gates.runs(f"m@{v.id}")[-1].summary["gates_digest"]
    # and a trust change (signature gates read it) withdraws a production run too
    v2 = commit(any_reg, tmp_path, 1, 0.95)
    assert any_reg.gates.run(f"m@{v2.id}", channel="production", actor="ci-bot").passed
    apply(any_reg, other + "trust:\n  require: false\n  keys: [release]\n")
    with pytest.raises(GateNotPassed, match="the policy changed them since"):
        any_reg.promote(f"m@{v2.id}", "production", actor="ci-bot")


def test_a_user_without_the_role_is_refused(any_reg: Registry, tmp_path: Path) -> None:
    apply(any_reg)
    v = commit(any_reg, tmp_path, 0, 0.95)
    assert any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci-bot").passed
    before = _state(any_reg)
    # bob is a promoter, but production names its own promoters.
    for who in ("mallory", "bob"):
        with pytest.raises(PermissionDenied, match=f"{who} may not promote"):
            any_reg.promote(f"m@{v.id}", "production", actor=who, create=True)
    assert _state(any_reg) == before
    # An unprotected channel is open to anyone.
    any_reg.promote(f"m@{v.id}", "dev", actor="mallory", create=True)


def test_force_needs_admin_and_a_reason(any_reg: Registry, tmp_path: Path) -> None:
    apply(any_reg)
    v = commit(any_reg, tmp_path, 0, 0.2)
    before = _state(any_reg)
    with pytest.raises(PermissionDenied, match="admin"):
        any_reg.promote(f"m@{v.id}", "production", actor="ci-bot", force=True, reason="hot",
                        create=True)
    with pytest.raises(UsageError, match="reason"):
        any_reg.promote(f"m@{v.id}", "production", actor="alice", force=True, reason=" ")
    assert _state(any_reg) == before
    any_reg.promote(f"m@{v.id}", "production", actor="alice", force=True,
                    reason="incident 42: ship the fix now")
    move = any_reg.history("m", "production")[-1]
    assert (move.action, move.actor, move.reason) == ("force", "alice",
                                                      "incident 42: ship the fix now")
    entry = any_reg.audit(model="m", channel="production")[-1]
    assert (entry.action, entry.actor) == ("force", "alice")


def test_rollback_restores_the_previous_target(any_reg: Registry, tmp_path: Path) -> None:
    apply(any_reg)
    v1 = commit(any_reg, tmp_path, 0, 0.95)
    v2 = commit(any_reg, tmp_path, 1, 0.96)
    for v in (v1, v2):
        assert any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci-bot").passed
        any_reg.promote(f"m@{v.id}", "production", actor="ci-bot", create=True)
    before = _state(any_reg)
    with pytest.raises(PermissionDenied, match="may not roll back"):
        any_reg.rollback("m", "production", actor="mallory")
    assert _state(any_reg) == before
    with pytest.raises(PermissionDenied):
        any_reg._governance.authorize_ref_delete("m", "production", "channel", "mallory")
    any_reg.rollback("m", "production", actor="ci-bot", reason="latency spike")
    assert any_reg.resolve("m@production").id == v1.id
    assert any_reg.history("m", "production")[-1].action == "rollback"


def test_regression_gate_must_be_against_what_the_channel_holds(any_reg: Registry,
                                                                tmp_path: Path) -> None:
    apply(any_reg)
    v1 = commit(any_reg, tmp_path, 0, 0.80)
    v2 = commit(any_reg, tmp_path, 1, 0.78)
    v3 = commit(any_reg, tmp_path, 2, 0.70)
    r = any_reg.gates.run(f"m@{v1.id}", channel="staging", actor="bob")
    assert r.passed and "no current version" in r.results[1].message
    # v2 is gated while staging is empty, then v1 lands: v2's run is stale.
    assert any_reg.gates.run(f"m@{v2.id}", channel="staging", actor="bob").passed
    any_reg.promote(f"m@{v1.id}", "staging", actor="bob", create=True)
    with pytest.raises(GateNotPassed, match="moved since"):
        any_reg.promote(f"m@{v2.id}", "staging", actor="bob")
    r2 = any_reg.gates.run(f"m@{v2.id}", channel="staging", actor="bob")
    assert r2.passed and r2.results[1].measured == 0.78
    r3 = any_reg.gates.run(f"m@{v3.id}", channel="staging", actor="bob")
    assert not r3.passed and "regresses" in r3.results[1].message
    any_reg.promote(f"m@{v2.id}", "staging", actor="bob")


def test_policy_changes_need_an_admin_and_are_audited(any_reg: Registry) -> None:
    apply(any_reg, actor="whoever")  # the first policy: anyone may bootstrap
    with pytest.raises(PermissionDenied, match="only admins"):
        apply(any_reg, POLICY + "# edit\n    ", actor="bob")
    assert not any_reg._governance.apply_policy(
        any_reg._governance.policy() or pytest.fail("no policy"), "alice")
    entries = any_reg.audit(action="policy")
    assert [e.actor for e in entries] == ["whoever"]
