"""LiteMeta records a commit (meta/litewrite.py) with the same rows MetaStore writes:
the same commits through each give the same databases, apart from times and what
depends on them (version ids, audit hashes), and each audit chain verifies."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_model

from modelvc.errors import AlreadyExists, RefMoved
from modelvc.layout import find
from modelvc.meta.lite import LiteMeta
from modelvc.meta.store import MetaStore
from modelvc.objects import open_store
from modelvc.registry import Registry

TABLES = ("models", "versions", "refs", "ref_moves", "objects", "version_objects", "audit",
          "audit_head", "webhooks")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


def _open(root: Path, lite: bool) -> Registry:
    if lite:
        reg = Registry.open_local(root)
        assert isinstance(reg._meta, LiteMeta)
        return reg
    lay = find(root)
    return Registry(lay, MetaStore.open(lay.meta_url),
                    open_store(lay.objects_url, deferred_fsync=True))


def _history(root: Path, work: Path, lite: bool) -> list[str]:
    """Commits of every kind a commit records: a new model and branch, a head move, a
    new branch from a fixed parent, tags, a second model; refusals that record nothing."""
    Registry.init(root).close()
    f = work / "model.safetensors"
    base = write_model(f, 0)
    reg = _open(root, lite)
    try:
        ids = [reg.commit(f, model="m", message="first", params={"lr": 0.1}).id]
        write_model(f, 1, base=base)
        ids.append(reg.commit(f, model="m", message="ck1", metrics={"acc": 0.5},
                              tags=["t1", "t2"]).id)
        write_model(f, 2, base=base)
        ids.append(reg.commit(f, model="m", branch="exp", parent="m@v1", message="é").id)
        with pytest.raises(RefMoved):
            reg.commit(f, model="m", branch="main", parent="m@v1")
        with pytest.raises(AlreadyExists):
            reg.commit(f, model="m", tags=["t1"])
        (work / "d").mkdir(exist_ok=True)
        (work / "d" / "a.json").write_text('{"a": 1}')
        ids.append(reg.commit(work / "d", model="other").id)
        if not lite:
            assert not isinstance(reg._meta, LiteMeta)
        assert reg.verify_audit() == []
    finally:
        reg.close()
    return ids


def _rows(db: Path, ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, times checked for their format and then masked, version ids
    replaced by their order, audit hashes masked (they cover the times), and so are
    the compressed sizes of manifests (which hold the times)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with sqlite3.connect(db) as conn:
        manifest = dict(conn.execute("SELECT id, stored_size FROM objects "
                                     "WHERE kind = 'manifest'").fetchall())
        for t in TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
            rows = []
            for r in conn.execute(f"SELECT * FROM {t}"):
                cells = []
                for c, v in zip(cols, r, strict=True):
                    if c == "stored_size" and t in ("versions", "objects"):
                        v -= manifest.get(r[0], 0)  # a version's size counts its manifest
                    elif c in ("at", "created_at", "updated_at"):
                        assert isinstance(v, str) and STAMP.match(v), (t, c, v)
                        v = "T"
                    elif c in ("hash", "prev_hash"):
                        v = "H" if v != "0" * 64 else v
                    elif isinstance(v, str):
                        for i, vid in enumerate(ids):
                            v = v.replace(vid, f"V{i}")
                    cells.append(v)
                rows.append(tuple(cells))
            out[t] = sorted(rows, key=repr)
    return out


def test_lite_commit_writes_what_metastore_writes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    got = _rows(tmp_path / "a" / ".modelvc" / "meta.db",
                _history(tmp_path / "a", tmp_path / "wa", lite=True))
    want = _rows(tmp_path / "b" / ".modelvc" / "meta.db",
                 _history(tmp_path / "b", tmp_path / "wb", lite=False))
    assert got == want
    assert len(got["versions"]) == 4 and len(got["audit"]) >= 5


def test_a_lite_commit_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """The whole commit, webhooks asked for after it, in a fresh interpreter."""
    import subprocess
    import sys

    f = tmp_path / "w" / "model.safetensors"
    write_model(f, 0)
    Registry.init(tmp_path / "r").close()
    code = ("import sys; from modelvc.registry import Registry\n"
            f"r = Registry.open({str(tmp_path / 'r')!r})\n"
            f"r.commit({str(f)!r}, model='m'); r.close()\n"
            "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy'))[:3])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
