"""LiteMeta records a commit (meta/litewrite.py) with the same rows MetaStore writes:
the same commits through each give the same databases, apart from times and what
depends on them (version ids, audit hashes), and each audit chain verifies."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_model

from modelvc.errors import AlreadyExists, ModelvcError, RefMoved
from modelvc.layout import find
from modelvc.meta.api import AuditEntry
from modelvc.meta.lite import LiteMeta
from modelvc.meta.store import MetaStore
from modelvc.objects import open_store
from modelvc.registry import Registry

TABLES = ("models", "versions", "refs", "ref_moves", "objects", "version_objects", "audit",
          "audit_head", "webhooks", "gate_runs")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


def _open(root: Path, lite: bool) -> Registry:
    if lite:
        reg = Registry.open_local(root)
        assert isinstance(reg._meta, LiteMeta)
        return reg
    lay = find(root)
    return Registry(lay, MetaStore.open(lay.meta_url),
                    open_store(lay.objects_url, deferred_fsync=True))


def _history(root: Path, work: Path, lite: bool, refused: list[str]) -> list[str]:
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
        refused += _moves(reg, ids)
        if not lite:
            assert not isinstance(reg._meta, LiteMeta)
        assert reg.verify_audit() == []
    finally:
        reg.close()
    return ids


def _moves(reg: Registry, ids: list[str]) -> list[str]:
    """What promote, rollback, tag and gate run write, and the ref moves each refuses
    (every refusal writes nothing): through the registry, then the metadata verbs. The
    refusals' errors (class, message, hint; version ids by their order)."""
    reg.promote("m@v1", "production", create=True, reason="first")
    reg.promote("m@v2", "production", reason="better")
    reg.rollback("m", "production", reason="oops")
    reg.tag("m@v2", "t3")
    reg.create_branch("m", "hotfix", at="m@v1")
    reg.delete_ref("m", "hotfix", reason="done")
    meta = reg._meta
    meta.set_ref("m", "t3", "tag", expected=ids[1], new=None, actor="tester",
                 action="delete", reason="the store may delete tags")
    gate = AuditEntry(actor="tester", action="gate", model="m", target="m@production")
    for passed in (False, True):
        meta.record_gate_run(version_id=ids[1], channel="production", policy_digest="d" * 64,
                             passed=passed, report_id="r" * 64,
                             summary={"failed": [] if passed else ["metric"]},
                             actor="tester", audit_entry=gate)
    moves: list[tuple[str, str, str, str | None, str | None, bool]] = [
        ("nope", "production", "channel", None, ids[0], False),  # no model
        ("m", "staging", "channel", None, ids[0], False),  # no ref, not create
        ("m", "production", "channel", None, ids[0], True),  # exists
        ("m", "t1", "tag", None, ids[0], True),  # tag exists
        ("m", "t1", "channel", ids[1], ids[0], False),  # a tag, not a channel
        ("m", "t1", "tag", ids[1], ids[0], False),  # tags never move
        ("m", "production", "channel", ids[1], ids[0], False),  # moved: not at ids[1]
        ("m", "production", "channel", ids[0], "0" * 64, False),  # no such version
        ("m", "production", "channel", ids[0], ids[3], False),  # another model's version
    ]
    refused = []
    for model, name, kind, expected, new, create in moves:
        with pytest.raises(ModelvcError) as err:
            meta.set_ref(model, name, kind, expected=expected, new=new, actor="tester",
                         action="promote", create=create)
        said = f"{type(err.value).__name__}: {err.value.message} ({err.value.hint})"
        for i, vid in enumerate(ids):
            said = said.replace(vid, f"V{i}")
        refused.append(said)
    row = meta.set_ref("m", "production", "channel", expected=ids[0], new=ids[2],
                       actor="tester", action="promote", reason="direct",
                       audit=AuditEntry(actor="tester", action="promote", model="m",
                                        target="m@production", before={"version": ids[0]},
                                        after={"version": ids[2]}))
    assert (row.version_id, row.revision, row.updated_at.tzinfo) == (ids[2], 4, UTC)
    if isinstance(meta, LiteMeta):
        assert meta._real is None  # all of the above without SQLAlchemy
    reg.delete("m@v1", reason="gone")  # no ref points at it now
    with pytest.raises(ModelvcError, match="deleted"):
        meta.set_ref("m", "production", "channel", expected=ids[2], new=ids[0],
                     actor="tester", action="promote")
    return refused


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
                    elif c in ("at", "created_at", "updated_at") or (
                            c == "deleted_at" and v is not None):
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
    refused: tuple[list[str], list[str]] = ([], [])
    got = _rows(tmp_path / "a" / ".modelvc" / "meta.db",
                _history(tmp_path / "a", tmp_path / "wa", True, refused[0]))
    want = _rows(tmp_path / "b" / ".modelvc" / "meta.db",
                 _history(tmp_path / "b", tmp_path / "wb", False, refused[1]))
    assert got == want
    assert refused[0] == refused[1] and len(refused[0]) == 9
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
