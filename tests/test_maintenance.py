"""gc also expires upload-possession rows (meta/uploads.py) older than a day, on each
metadata backend; a dry run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelvc import maintenance
from modelvc.registry import Registry

OLD, FRESH = "a" * 64, "b" * 64


def _held(reg: Registry, subject: str) -> set[str]:
    return reg._meta.uploaded(subject, [OLD, FRESH], since=datetime.now(UTC) - timedelta(days=30))


def test_gc_expires_uploads_older_than_a_day(any_reg: Registry) -> None:
    now = datetime.now(UTC)
    any_reg._meta.record_uploads("ann", [OLD], at=now - timedelta(hours=25))
    any_reg._meta.record_uploads("ann", [FRESH], at=now - timedelta(hours=23))
    any_reg._meta.record_uploads("bob", [OLD], at=now - timedelta(days=3))

    dry = any_reg.gc(dry_run=True)
    assert dry.uploads_expired == 0 and "uploads_expired" not in dry.to_json()
    assert _held(any_reg, "ann") == {OLD, FRESH} and _held(any_reg, "bob") == {OLD}

    done = any_reg.gc(dry_run=False)
    assert done.uploads_expired == 2
    assert done.to_json()["uploads_expired"] == 2
    assert _held(any_reg, "ann") == {FRESH} and _held(any_reg, "bob") == set()
    entry = any_reg.audit(action="gc")[-1]
    assert entry.after is not None and entry.after["uploads_expired"] == 2

    assert any_reg.gc(dry_run=False).uploads_expired == 0  # nothing left to expire


def test_gc_upload_ttl_is_a_parameter(reg: Registry) -> None:
    now = datetime.now(UTC)
    reg._meta.record_uploads("ann", [OLD], at=now - timedelta(hours=2))
    reg._meta.record_uploads("ann", [FRESH])
    report = maintenance.gc(reg.layout, reg._meta, reg._io, dry_run=False, actor="tester",
                            upload_ttl=timedelta(hours=1))
    assert report.uploads_expired == 1
    assert _held(reg, "ann") == {FRESH}
