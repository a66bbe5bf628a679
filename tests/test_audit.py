"""The audit trail: every mutation recorded, hash-chained, tampering detected."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from modelvc.meta.schema import audit
from modelvc.registry import Registry
from tests.conftest import write_model


def _mutate(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    reg.commit(tmp_path / "a.safetensors", model="toy", message="base")
    reg.commit(tmp_path / "b.safetensors", model="toy", tags=["gold"])
    reg.create_branch("toy", "exp", at="toy@v1")
    reg.promote("toy@v1", "production", reason="launch")
    reg.promote("toy@v2", "production", reason="better")
    reg.rollback("toy", "production", reason="regressed")
    reg.delete_ref("toy", "exp", reason="done")


def test_every_mutation_is_audited(any_reg: Registry, tmp_path: Path) -> None:
    _mutate(any_reg, tmp_path)
    rows = any_reg.audit()
    assert [(r.action, r.target) for r in rows] == [
        ("commit", "toy@main"), ("commit", "toy@main"), ("tag", "toy@gold"),
        ("create", "toy@exp"), ("promote", "toy@production"), ("promote", "toy@production"),
        ("rollback", "toy@production"), ("delete", "toy@exp")]
    assert all(r.actor == "tester" for r in rows)
    v1, v2 = any_reg.resolve("toy@v1").id, any_reg.resolve("toy@v2").id
    back = rows[6]
    assert back.before == {"version": v2} and back.after["version"] == v1
    assert back.reason == "regressed"
    assert [r.action for r in any_reg.audit(model="toy", channel="production")] == [
        "promote", "promote", "rollback"]
    assert any_reg.audit(actor="nobody") == []
    assert any_reg.audit(since=rows[-1].at) == rows[-1:]
    assert any_reg.verify_audit() == []
    any_reg.gc(dry_run=False, grace_seconds=0)
    assert any_reg.audit()[-1].action == "gc"


def test_tampering_is_detected(reg: Registry, tmp_path: Path) -> None:
    _mutate(reg, tmp_path)
    engine = sa.create_engine(reg.layout.meta_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit).where(audit.c.id == 5).values(actor="mallory"))
    problems = reg.verify_audit()
    assert problems == ["entry 5 (promote toy@production) was modified"]
    with engine.begin() as conn:
        conn.execute(sa.update(audit).where(audit.c.id == 5).values(actor="tester"))
        conn.execute(sa.delete(audit).where(audit.c.id == 3))
    assert any("entry 4" in p and "link broken" in p for p in reg.verify_audit())
    with engine.begin() as conn:
        conn.execute(sa.delete(audit).where(audit.c.id >= 4))
    assert any("newest entries were removed" in p for p in reg.verify_audit())
    engine.dispose()
