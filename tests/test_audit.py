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
    reg.promote("toy@v1", "production", reason="launch", create=True)
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
    engine = sa.create_engine(reg._layout.meta_url)
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


def _rehash_from(conn: sa.Connection, first: int) -> None:
    """What a database writer does to hide an edit: recompute every hash from FIRST on,
    and the head (governance.entry_hash is public knowledge)."""
    from modelvc.meta.governance import _audit_row, entry_hash
    from modelvc.meta.schema import audit_head

    rows = [_audit_row(r) for r in conn.execute(sa.select(audit).order_by(audit.c.id))]
    prev = next((r.hash for r in reversed(rows) if r.id < first), "0" * 64)
    for r in rows:
        if r.id < first:
            continue
        h = entry_hash(prev, r.at, r)
        conn.execute(sa.update(audit).where(audit.c.id == r.id).values(prev_hash=prev, hash=h))
        prev = h
    conn.execute(sa.update(audit_head).values(hash=prev, seq=len(rows)))


def test_an_edit_with_the_chain_recomputed_is_detected(any_reg: Registry,
                                                       tmp_path: Path) -> None:
    """Issue 12 finding 8: the chain alone is unkeyed; the sealed checkpoints are not."""
    _mutate(any_reg, tmp_path)
    assert any_reg.verify_audit() == []
    engine = sa.create_engine(any_reg._layout.meta_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit).where(audit.c.id == 5).values(actor="mallory"))
        _rehash_from(conn, 5)
    engine.dispose()
    assert any_reg._meta.verify_audit() == []  # the chain re-hashed: it checks out
    problems = any_reg.verify_audit()
    assert problems and all("changed after it was sealed" in p for p in problems)
    assert any("entry 5 " in p for p in problems)


def test_newest_entries_cut_off_with_the_head_reset_are_detected(reg: Registry,
                                                                  tmp_path: Path) -> None:
    _mutate(reg, tmp_path)
    engine = sa.create_engine(reg._layout.meta_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit).where(audit.c.id >= 6))
        _rehash_from(conn, 6)
    assert reg._meta.verify_audit() == []
    problems = reg.verify_audit()
    assert "entry 8 was sealed but is gone from the database (entries were removed)" in problems


def test_a_forged_checkpoint_does_not_verify(reg: Registry, tmp_path: Path) -> None:
    import json

    _mutate(reg, tmp_path)
    path = reg._layout.root / "audit" / "checkpoints"
    lines = path.read_text().splitlines()
    forged = json.loads(lines[-1]) | {"hash": "f" * 64}
    path.write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    assert reg.verify_audit() == [f"audit checkpoint line {len(lines) + 1} (entry "
                                  f"{forged['id']}) does not verify with the audit key: it "
                                  "was altered, or sealed with another key"]
    assert (reg._layout.root / "audit" / "key").stat().st_mode & 0o077 == 0
