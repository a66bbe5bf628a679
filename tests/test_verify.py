"""verify: every stored object re-hashed, and every version's listed objects recorded."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from modelvc.meta.schema import objects, version_objects
from modelvc.registry import Registry
from tests.conftest import write_model


def test_verify_names_a_version_whose_objects_have_no_row(reg: Registry,
                                                          tmp_path: Path) -> None:
    """Issue 12 finding 8: verify re-hashed only objects rows; a version listing an
    object without one passed (and gc would not keep that object)."""
    write_model(tmp_path / "a.safetensors", 0)
    v = reg.commit(tmp_path / "a.safetensors", model="m")
    seg = next(s.id for f in reg.manifest("m@v1").files for s in f.segments)
    engine = sa.create_engine(reg._layout.meta_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(version_objects).where(version_objects.c.object_id == seg))
        conn.execute(sa.delete(objects).where(objects.c.id == seg))
    engine.dispose()
    report = reg.verify()
    assert not report.ok
    assert report.unrecorded == {f"m@v1 ({v.id[:12]})": [seg]}
    assert report.corrupt == {}  # the bytes themselves are intact (and were re-hashed)
