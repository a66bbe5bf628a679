"""LiteMeta (meta/lite.py) answers its reads exactly as MetaStore does, on the same
SQLite database, errors included; anything else goes to a MetaStore it opens itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write_model

from modelvc.errors import ModelvcError, UnsupportedFormat
from modelvc.meta.api import FORMAT_VERSION, AuditEntry
from modelvc.meta.lite import LiteMeta, open_meta
from modelvc.meta.store import MetaStore
from modelvc.registry import Registry


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except ModelvcError as exc:
        return ("error", type(exc).__name__, exc.message, exc.hint)


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Two models, branches, a tag, a channel moved and rolled back, a deleted version,
    an applied policy (what a checkout's trust check reads)."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    reg = Registry.init(tmp_path / "repo")
    f = tmp_path / "w" / "model.safetensors"
    base = write_model(f, 0)
    vs = [reg.commit(f, model="m", message="first", params={"lr": 0.1})]
    for i in range(1, 4):
        write_model(f, i, base=base)
        vs.append(reg.commit(f, model="m", message=f"ck{i}", metrics={"acc": i / 10}))
    write_model(f, 9, base=base)
    vs.append(reg.commit(f, model="m", branch="exp", parent=f"m@v{vs[1].number}"))
    write_model(f, 10, base=base)
    vs.append(reg.commit(f, model="m", branch="exp"))
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "a.json").write_text('{"a": 1}')
    reg.commit(tmp_path / "w2", model="other_model")
    reg.tag(f"m@v{vs[2].number}", "release-1")
    reg.promote(f"m@v{vs[1].number}", "production", create=True, reason="first")
    reg.promote(f"m@v{vs[3].number}", "production", reason="better")
    reg.rollback("m", "production", reason="oops")
    reg.delete(f"m@v{vs[4].number}", reason="bad run")
    reg.gates.apply_policy("version: 1\ntrust:\n  require: false\n")
    for channel, passed in (("production", False), ("staging", True), ("production", True)):
        reg._meta.record_gate_run(
            version_id=vs[1].id, channel=channel, policy_digest="d" * 64, passed=passed,
            report_id="r" * 64, summary={"failed": [] if passed else ["metric"], "n": 1},
            actor="tester", audit_entry=AuditEntry(actor="tester", action="gate",
                                                   model="m", target=f"m@{channel}"))
    return reg


def test_lite_reads_match_metastore(history: Registry, tmp_path: Path) -> None:
    url = history._layout.meta_url
    lite = open_meta(url)
    real = MetaStore.open(url)
    try:
        assert isinstance(lite, LiteMeta)
        assert (lite.registry_id, lite.format_version) == (real.registry_id,
                                                           real.format_version)
        vids = [v.id for v in real.list_versions("m", include_deleted=True)]
        assert len(vids) == 6
        soon = datetime.now(UTC) + timedelta(days=1)
        entries = real.audit_entries()
        assert len(entries) >= 10
        mid = entries[len(entries) // 2].at  # some entries on either side, and at it
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("list_models", (), {}),
            *[("get_model", (n,), {}) for n in ("m", "other_model", "nope")],
            *[("get_version", (v,), {}) for v in [*vids, "0" * 64]],
            *[("version_by_number", ("m", n), {}) for n in (1, 3, 5, 6, 7, 0, -1, 2**40)],
            ("version_by_number", ("nope", 1), {}),
            *[("versions_by_prefix", (m, p), {}) for m in ("m", None, "nope")
              for p in (vids[0][:4], vids[1][:1], "", "%", "_", vids[2].upper()[:6])],
            ("list_versions", ("m",), {}),
            ("list_versions", ("m",), {"include_deleted": True}),
            ("list_versions", ("nope",), {}),
            *[("get_ref", ("m", n), {}) for n in ("main", "exp", "production",
                                                  "release-1", "nope")],
            ("get_ref", ("nope", "main"), {}),
            *[("list_refs", ("m", k), {}) for k in (None, "branch", "channel", "tag")],
            ("list_refs", ("nope", None), {}),
            *[("ref_history", ("m", n), {}) for n in (None, "production", "main", "nope")],
            ("ref_history", ("nope", None), {}),
            ("current_policy", (), {}),
            *[("signatures", (v,), {}) for v in vids[:2]],
            ("audit_entries", (), {}),
            ("audit_entries", (), {"action": "policy", "target": "policy", "newest": 1}),
            ("audit_entries", (), {"action": "promote", "target": "m@production",
                                   "newest": 2}),
            ("audit_entries", (), {"model": "m", "limit": 3}),
            ("audit_entries", (), {"actor": "tester", "after_id": 2, "newest": 2}),
            ("audit_entries", (), {"until": soon}),
            ("audit_entries", (), {"since": soon}),
            ("audit_entries", (), {"since": mid, "until": soon}),
            ("audit_entries", (), {"until": mid.replace(tzinfo=None)}),  # naive: UTC
            ("audit_entries", (), {"since": mid.astimezone(timezone(timedelta(hours=5)))}),
            ("audit_entries", (), {"after_id": 3, "before_id": 9}),
            ("audit_entries", (), {"before_id": 6, "newest": 3}),
            ("audit_entries", (), {"model": "m", "target": "m@production"}),
            ("audit_entries", (), {"actor": "nobody"}),
            ("audit_entries", (), {"action": "commit", "limit": 2, "after_id": 1}),
            *[("gate_runs", (v,), {}) for v in vids[:3]],
            *[("gate_runs", (vids[1],), {"channel": c}) for c in ("production", "staging",
                                                                  "nope")],
        ]
        for name, args, kw in calls:
            got = _outcome(lambda: getattr(lite, name)(*args, **kw))  # noqa: B023
            want = _outcome(lambda: getattr(real, name)(*args, **kw))  # noqa: B023
            assert got == want, (name, args, kw)
        assert lite._real is None  # all of them read here, no SQLAlchemy
        # a verb LiteMeta does not read itself: answered by a MetaStore it opened
        assert lite.version_objects(vids[0]) == real.version_objects(vids[0])
    finally:
        lite.close()
        real.close()


def test_registry_reads_and_writes_through_lite(history: Registry) -> None:
    reopened = Registry.open_local(history._layout.root.parent)
    try:
        assert isinstance(reopened._meta, LiteMeta)  # what open_local gives on SQLite
        assert [v.id for v in reopened.log("m@main")] == [v.id for v in history.log("m@main")]
        # a write opens the real MetaStore; the next read sees it
        reopened.tag("m@v1", "kept")
        assert reopened.resolve("m@kept").number == 1
        assert [r.name for r in reopened.refs("m", "tag")] == ["kept", "release-1"]
    finally:
        reopened.close()


def test_other_states_are_left_to_metastore(history: Registry) -> None:
    """A newer format is refused as MetaStore refuses it; an unknown revision opens
    through MetaStore (which decides); neither is read by LiteMeta."""
    url = history._layout.meta_url
    db = history._layout.root / "meta.db"
    history.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE repo_info SET value = ? WHERE key = 'format_version'",
                     (str(FORMAT_VERSION + 1),))
    with pytest.raises(UnsupportedFormat):
        open_meta(url)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE repo_info SET value = ? WHERE key = 'format_version'",
                     (str(FORMAT_VERSION),))
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    meta = open_meta(url)
    try:
        assert isinstance(meta, MetaStore)
    finally:
        meta.close()


def test_change_token_moves_with_every_commit_and_only_then(history: Registry) -> None:
    """The gateway's cheap poll: equal while nothing was committed, different after a
    write made on this very thread (the token has a connection of its own)."""
    meta = open_meta(history._layout.meta_url)
    assert isinstance(meta, LiteMeta)
    try:
        first = meta.change_token()
        assert first is not None
        assert meta.change_token() == first
        history.ref("m", "production")  # reads move nothing
        assert meta.change_token() == first
        history.promote("m@v1", "production", reason="again")
        second = meta.change_token()
        assert second != first
        assert meta.change_token() == second
    finally:
        meta.close()
    real = MetaStore.open(history._layout.meta_url)
    try:
        assert real.change_token() is None  # no cheap check: callers read
    finally:
        real.close()


# Threads read through one LiteMeta while another thread closes it (a gateway's load
# still reading as its test or server shuts down): in a child process, as CPython
# 3.11's sqlite3 kills the whole process when a connection in use is closed under it.
_CLOSE_UNDER_READERS = """
import sys, threading, time
from modelvc.errors import StorageError
from modelvc.meta.lite import open_meta
url, rounds = sys.argv[1], int(sys.argv[2])
outcomes = {"ok": 0, "closed": 0}
for _ in range(rounds):
    lite = open_meta(url)
    def read() -> None:
        try:
            while True:
                lite.list_refs("m")
                outcomes["ok"] += 1
        except StorageError as exc:
            assert "closed" in exc.message, exc.message
            outcomes["closed"] += 1
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    time.sleep(0.005)
    lite.close()
    for t in readers:
        t.join()
print(outcomes["ok"], outcomes["closed"])
"""


def test_close_under_readers_fails_their_calls_not_the_process(history: Registry) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CLOSE_UNDER_READERS,
                          history._layout.meta_url, "100"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ok, closed = map(int, out.stdout.split())
    assert closed == 300  # every reader stopped on the clear error, none crashed
    assert ok > 0
