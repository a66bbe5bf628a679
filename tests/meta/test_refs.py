from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from meta_helpers import new_version

from modelvc.errors import AlreadyExists, Conflict, ModelNotFound, RefMoved, RefNotFound
from modelvc.meta.store import MetaStore


@pytest.fixture
def vids(meta: MetaStore) -> list[str]:
    meta.ensure_model("m")
    out = []
    for i in range(3):
        v = new_version("m", i)
        meta.insert_version(v, branch=None, expected_head=None, create_branch=False, actor="a")
        out.append(v.id)
    return out


def setref(meta: MetaStore, name: str, kind: str, expected: str | None, new: str | None,
           **kw: object):  # fmt: skip
    return meta.set_ref("m", name, kind, expected=expected, new=new, actor="carol",  # type: ignore[arg-type]
                        action=str(kw.pop("action", "promote")), **kw)  # type: ignore[arg-type]  # fmt: skip


def test_create_and_cas(meta: MetaStore, vids: list[str]) -> None:
    r = setref(meta, "prod", "channel", None, vids[0], create=True, action="create")
    assert (r.version_id, r.revision, r.kind) == (vids[0], 1, "channel")
    assert meta.get_ref("m", "prod") == r
    r2 = setref(meta, "prod", "channel", vids[0], vids[1])
    assert (r2.version_id, r2.revision) == (vids[1], 2)
    assert r2.updated_at.tzinfo is UTC
    with pytest.raises(RefMoved):  # stale expectation
        setref(meta, "prod", "channel", vids[0], vids[2])
    assert meta.get_ref("m", "prod").version_id == vids[1]


def test_create_twice_and_missing(meta: MetaStore, vids: list[str]) -> None:
    setref(meta, "dev", "channel", None, vids[0], create=True)
    with pytest.raises(AlreadyExists):
        setref(meta, "dev", "channel", None, vids[1], create=True)
    with pytest.raises(AlreadyExists):  # names are unique across kinds
        setref(meta, "dev", "tag", None, vids[1], create=True)
    with pytest.raises(RefNotFound):
        setref(meta, "staging", "channel", None, vids[0])
    with pytest.raises(Conflict):  # wrong kind
        setref(meta, "dev", "branch", vids[0], vids[1])
    with pytest.raises(RefNotFound):
        meta.get_ref("m", "nope")
    with pytest.raises(ModelNotFound):
        meta.get_ref("ghost", "dev")
    with pytest.raises(RefNotFound):  # target must exist
        setref(meta, "dev", "channel", vids[0], "e" * 64)


def test_tags_are_immutable(meta: MetaStore, vids: list[str]) -> None:
    setref(meta, "v1.0", "tag", None, vids[0], create=True)
    with pytest.raises(Conflict):
        setref(meta, "v1.0", "tag", vids[0], vids[1])
    assert meta.get_ref("m", "v1.0").version_id == vids[0]
    setref(meta, "v1.0", "tag", vids[0], None, action="delete")  # deleting is allowed
    with pytest.raises(RefNotFound):
        meta.get_ref("m", "v1.0")


def test_delete_keeps_history(meta: MetaStore, vids: list[str]) -> None:
    setref(meta, "dev", "channel", None, vids[0], create=True, action="create")
    setref(meta, "dev", "channel", vids[0], vids[1])
    setref(meta, "dev", "channel", vids[1], None, action="delete", reason="retired")
    with pytest.raises(RefNotFound):
        meta.get_ref("m", "dev")
    hist = meta.ref_history("m", "dev")
    assert [(h.old, h.new, h.action) for h in hist] == [
        (None, vids[0], "create"),
        (vids[0], vids[1], "promote"),
        (vids[1], None, "delete"),
    ]
    assert hist[-1].reason == "retired" and hist[-1].actor == "carol"
    # re-created ref starts a fresh revision count, history continues
    assert setref(meta, "dev", "channel", None, vids[2], create=True).revision == 1
    assert len(meta.ref_history("m", "dev")) == 4


def test_history_oldest_first_and_filtered(meta: MetaStore, vids: list[str]) -> None:
    setref(meta, "a", "channel", None, vids[0], create=True)
    setref(meta, "b", "channel", None, vids[1], create=True)
    setref(meta, "a", "channel", vids[0], vids[2])
    assert [(h.name, h.new) for h in meta.ref_history("m")] == [
        ("a", vids[0]), ("b", vids[1]), ("a", vids[2]),
    ]  # fmt: skip
    assert [h.new for h in meta.ref_history("m", "a")] == [vids[0], vids[2]]
    ids = [h.id for h in meta.ref_history("m")]
    assert ids == sorted(ids)


def test_ref_at(meta: MetaStore, vids: list[str]) -> None:
    times = [datetime.now(UTC)]
    setref(meta, "prod", "channel", None, vids[0], create=True)
    for old, new in [(vids[0], vids[1]), (vids[1], vids[2]), (vids[2], None)]:
        time.sleep(0.01)
        times.append(datetime.now(UTC))
        time.sleep(0.01)
        setref(meta, "prod", "channel", old, new)
    times.append(datetime.now(UTC))
    assert meta.ref_at("m", "prod", times[0]) is None  # before it existed
    assert meta.ref_at("m", "prod", times[1]) == vids[0]
    assert meta.ref_at("m", "prod", times[2]) == vids[1]
    assert meta.ref_at("m", "prod", times[3]) == vids[2]
    assert meta.ref_at("m", "prod", times[4]) is None  # deleted
    # any time zone works: the same instant expressed in UTC+5
    plus5 = timezone_plus(5)
    assert meta.ref_at("m", "prod", times[2].astimezone(plus5)) == vids[1]
    # the move's own timestamp is included (at <= t)
    move = meta.ref_history("m", "prod")[1]
    assert meta.ref_at("m", "prod", move.at) == vids[1]
    assert meta.ref_at("m", "nope", times[4]) is None


def timezone_plus(hours: int):  # type: ignore[no-untyped-def]
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_branch_commit_moves_are_logged(meta: MetaStore) -> None:
    meta.ensure_model("n")
    a = new_version("n", "a")
    b = new_version("n", "b", parents=[a.id])
    meta.insert_version(a, branch="main", expected_head=None, create_branch=True, actor="x")
    with pytest.raises(RefMoved):  # the branch exists now: creating it again loses the race
        meta.insert_version(b, branch="main", expected_head=None, create_branch=True, actor="x")
    with pytest.raises(RefNotFound):  # not told to create
        meta.insert_version(b, branch="dev", expected_head=None, create_branch=False, actor="x")
    meta.insert_version(b, branch="main", expected_head=a.id, create_branch=False, actor="x")
    hist = meta.ref_history("n", "main")
    assert [(h.action, h.old, h.new, h.kind) for h in hist] == [
        ("create", None, a.id, "branch"),
        ("commit", a.id, b.id, "branch"),
    ]
    assert meta.get_ref("n", "main").revision == 2
