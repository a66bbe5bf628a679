"""A promotion racing another one past the regression gates.

The regression gates judge a version against what the channel held when they ran. If
another promotion lands after the check and before the move, the move must fail (and
say to re-run the gates), not overwrite a version nobody compared against. The second
promoter here is a real second registry handle, run at that exact moment from a hook
in the first promoter's authority check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelvc.errors import Conflict, GateNotPassed
from modelvc.gates.authority import Authority, Clearance
from modelvc.meta.api import VersionRow
from modelvc.registry import Registry

from .conftest import apply, commit

POLICY = """\
version: 1
roles:
  admin: [alice]
models:
  m:
    channels:
      production:
        gates:
          - metric: "accuracy >= 0.5"
          - regression: "accuracy >= production - 0.01"
      staging:
        gates:
          - metric: "accuracy >= 0.5"
"""


class PromoteMeanwhile(Authority):
    """Authorizes as usual, then lets another writer promote before returning."""

    def __init__(self, reg: Registry, other: Registry, ref: str, channel: str) -> None:
        super().__init__(reg._meta)
        self.other, self.ref, self.channel = other, ref, channel
        self.clearances: list[Clearance] = []

    def authorize_promotion(self, v: VersionRow, channel: str, actor: str, *, force: bool,
                            reason: str) -> Any:
        clearance = super().authorize_promotion(v, channel, actor, force=force, reason=reason)
        self.clearances.append(clearance)
        if self.ref:
            self.other.promote(self.ref, self.channel, actor="other", reason="meanwhile",
                               create=True)
            self.ref = ""  # once
        return clearance


@pytest.fixture
def gated(any_reg: Registry, tmp_path: Path) -> tuple[Registry, Registry, list[VersionRow]]:
    """production on v1 (0.90); v2 (0.95) and v3 (0.99) each passed against v1."""
    apply(any_reg, POLICY)
    vs = [commit(any_reg, tmp_path, i, acc) for i, acc in enumerate([0.90, 0.95, 0.99])]
    assert any_reg.gates.run(f"m@{vs[0].id}", channel="production", actor="ci").passed
    any_reg.promote(f"m@{vs[0].id}", "production", actor="ci", create=True)
    for v in vs[1:]:
        report = any_reg.gates.run(f"m@{v.id}", channel="production", actor="ci")
        assert report.passed and report.baseline == vs[0].id
    other = Registry.open(any_reg._layout.root)  # another process's handle
    return any_reg, other, vs


def test_clearance_names_the_baseline_and_the_swap_from_it_fails(
    gated: tuple[Registry, Registry, list[VersionRow]],
) -> None:
    reg, other, (v1, v2, v3) = gated
    try:
        gov = reg._governance
        clearance = gov.authorize_promotion(v2, "production", "ci", force=False, reason="")
        assert clearance.pinned and clearance.baseline == v1.id and clearance.run_id
        assert clearance.expected(reg_unset()) == v1.id
        # The move, as a compare-and-swap from that baseline, with v3 landing between
        # the check and the move: refused, v3 stays.
        racing = PromoteMeanwhile(reg, other, f"m@{v3.id}", "production")
        reg.__dict__["_governance"] = racing
        with pytest.raises(Conflict):  # RefMoved; GateNotPassed once promote pins itself
            reg.promote(f"m@{v2.id}", "production", actor="ci", expected=clearance.baseline,
                        create=True)
        assert racing.clearances == [clearance]
        assert reg.resolve("m@production").id == v3.id
        assert [m.new for m in reg.history("m", "production")] == [v1.id, v3.id]
        err = gov.moved_since_gated(v2, "production", clearance)
        assert isinstance(err, GateNotPassed)
        assert v1.id[:12] in err.message and v3.id[:12] in err.message
        assert err.hint and f"modelvc gate run m@v{v2.number} --channel production" in err.hint
        # A caller's own expectation must be the baseline the gates used.
        with pytest.raises(GateNotPassed, match="regression gates compared against"):
            clearance.expected(v3.id)
        assert clearance.expected(v1.id) == v1.id
        # Channels without regression gates, --force, and no policy are not pinned.
        assert reg.gates.run(f"m@{v2.id}", channel="staging", actor="ci").passed
        assert not gov.authorize_promotion(v2, "staging", "ci", force=False,
                                           reason="").pinned
        assert not gov.authorize_promotion(v2, "production", "alice", force=True,
                                           reason="incident 7").pinned
        assert Clearance().expected(v3.id) == v3.id
    finally:
        other.close()


def reg_unset() -> object:
    from modelvc.registry import UNSET

    return UNSET


def test_empty_channel_baseline_is_pinned_too(any_reg: Registry, tmp_path: Path) -> None:
    apply(any_reg, POLICY)
    v1 = commit(any_reg, tmp_path, 0, 0.9)
    assert any_reg.gates.run(f"m@{v1.id}", channel="production", actor="ci").passed
    c = any_reg._governance.authorize_promotion(v1, "production", "ci", force=False, reason="")
    assert c.pinned and c.baseline is None
    assert c.expected(reg_unset()) is None
    any_reg.promote(f"m@{v1.id}", "production", actor="ci", expected=None, create=True)
    assert any_reg.resolve("m@production").id == v1.id


def test_a_promotion_landing_between_check_and_move_is_caught(
    gated: tuple[Registry, Registry, list[VersionRow]],
) -> None:
    reg, other, (v1, v2, v3) = gated
    racing = PromoteMeanwhile(reg, other, f"m@{v3.id}", "production")
    reg.__dict__["_governance"] = racing  # the cached Authority, with the hook
    try:
        with pytest.raises(GateNotPassed, match="moved while") as err:
            reg.promote(f"m@{v2.id}", "production", actor="ci", create=True)
        assert err.value.hint and "gate run" in err.value.hint
        assert racing.clearances[0].baseline == v1.id
        # v3, the promotion that landed first, stays; v2 (never compared against v3,
        # and 0.04 worse) was not moved in over it.
        assert reg.resolve("m@production").id == v3.id
        assert [m.new for m in reg.history("m", "production")] == [v1.id, v3.id]
    finally:
        other.close()
