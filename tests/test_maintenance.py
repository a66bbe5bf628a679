"""gc also expires upload-possession rows (meta/uploads.py) older than a day, and
rewrites packs that deletes left mostly dead, on each metadata backend; a dry run
changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

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
    report = maintenance.gc(reg._layout, reg._meta, reg._io, dry_run=False, actor="tester",
                            upload_ttl=timedelta(hours=1))
    assert report.uploads_expired == 1
    assert _held(reg, "ann") == {FRESH}


def test_gc_repacks_what_deleted_versions_left_sparse(any_reg: Registry, tmp_path: Path) -> None:
    """Small tensors share packs; deleting a version leaves its pack mostly dead, and gc
    rewrites it: the registry verifies and every kept version checks out as it was
    committed (on SQLite and PostgreSQL metadata)."""
    rng = np.random.default_rng(3)
    weights = {f"t{i}": rng.standard_normal((32, 32)).astype(np.float32) for i in range(60)}
    model = tmp_path / "m.safetensors"
    saved: dict[str, bytes] = {}
    for n, changed in enumerate([range(60), range(45), range(50, 60)]):
        for i in changed:
            weights[f"t{i}"] = rng.standard_normal((32, 32)).astype(np.float32)
        save_file(weights, str(model))
        any_reg.commit(model, model="m", message=f"c{n}")
        saved[f"m@v{n + 1}"] = model.read_bytes()
    any_reg.delete("m@v1")  # v1's pack: 15 of its 60 tensors live on in v2 and v3
    dry = any_reg.gc(dry_run=True, grace_seconds=0)
    assert dry.packs_rewritten >= 1 and dry.to_json()["packs_rewritten"] == dry.packs_rewritten
    done = any_reg.gc(dry_run=False, grace_seconds=0)
    assert (done.packs_rewritten, done.packs_written) == (dry.packs_rewritten, 1)
    assert done.repack_bytes_freed > 0
    assert any_reg.verify().ok
    for v in ("m@v2", "m@v3"):
        out = tmp_path / v.replace("@", "-")
        any_reg.checkout(v, out)
        assert (out / "m.safetensors").read_bytes() == saved[v]
    again = any_reg.gc(dry_run=False, grace_seconds=0)
    assert again.packs_rewritten == 0 and not again.removable
    entry = any_reg.audit(action="gc")[-2]
    assert entry.after is not None and entry.after["packs_rewritten"] == done.packs_rewritten
