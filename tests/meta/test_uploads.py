"""Upload possession rows, shared by every server process on one database (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from meta_helpers import Backend, hexid

from modelvc.meta.store import MetaStore


def test_uploads_are_per_subject_and_expire(meta: MetaStore) -> None:
    a, b, c = (hexid("o", i) for i in range(3))
    t0 = datetime.now(UTC)
    meta.record_uploads("ann", [a, b, a])  # repeats inside one call are fine
    meta.record_uploads("bob", [c])
    since = t0 - timedelta(seconds=1)
    assert meta.uploaded("ann", [a, b, c], since=since) == {a, b}
    assert meta.uploaded("bob", [a, b, c], since=since) == {c}
    assert meta.uploaded("cid", [a, b, c], since=since) == set()
    assert meta.uploaded("ann", [], since=since) == set()
    # An old proof does not count, and a fresh upload of the same object renews it.
    old = t0 - timedelta(days=3)
    meta.record_uploads("old", [a, b], at=old)
    assert meta.uploaded("old", [a, b], since=t0 - timedelta(days=1)) == set()
    meta.record_uploads("old", [a])
    assert meta.uploaded("old", [a, b], since=t0 - timedelta(days=1)) == {a}
    # Expiry deletes exactly the rows older than the bound.
    assert meta.expire_uploads(t0 - timedelta(days=1)) == 1  # (old, b)
    assert meta.uploaded("old", [a, b], since=old - timedelta(days=1)) == {a}
    assert meta.uploaded("ann", [a, b], since=since) == {a, b}


def test_many_uploads_in_one_call(meta: MetaStore) -> None:
    ids = [hexid("many", i) for i in range(1200)]  # more than one IN batch
    meta.record_uploads("ann", ids)
    meta.record_uploads("ann", ids[:700])  # upsert over existing rows
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert meta.uploaded("ann", [*ids, hexid("none")], since=since) == set(ids)


def test_uploads_are_shared_by_two_stores_on_one_database(backend: Backend) -> None:
    """What two server processes see: one records, the other finds the proof."""
    one, two = MetaStore.open(backend.url), MetaStore.open(backend.url)
    try:
        oid = hexid("shared")
        one.record_uploads("ann", [oid])
        assert two.uploaded("ann", [oid], since=datetime.now(UTC) - timedelta(minutes=1)) \
            == {oid}
    finally:
        one.close()
        two.close()
