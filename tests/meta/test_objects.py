from __future__ import annotations

import pytest
from meta_helpers import new_version, obj

from modelvc.errors import Conflict, ObjectNotFound
from modelvc.meta.api import ObjectRow
from modelvc.meta.store import MetaStore


def add(meta: MetaStore, tag: str, objects: list[ObjectRow]) -> str:
    v = new_version("m", tag, objects=objects)
    meta.insert_version(v, branch=None, expected_head=None, create_branch=False, actor="a")
    return v.id


def test_insert_or_ignore_keeps_first_row(meta: MetaStore) -> None:
    meta.ensure_model("m")
    add(meta, "1", [obj("w"), obj("w")])  # duplicate inside one version is fine
    changed = ObjectRow(obj("w").id, "tensor", "zstd", 100, 99)
    add(meta, "2", [changed])
    assert meta.get_objects([obj("w").id, "ab" * 32]) == {obj("w").id: obj("w")}


def test_live_objects_follow_delta_chains(meta: MetaStore) -> None:
    meta.ensure_model("m")
    # c -> b -> a (delta references); d is standalone
    v1 = add(meta, "1", [obj("a"), obj("d")])
    add(meta, "2", [obj("b", ref="a")])
    v3 = add(meta, "3", [obj("c", ref="b")])
    live = meta.live_object_ids()
    assert live == {obj(n).id for n in "abcd"}
    meta.mark_deleted(v1, actor="a", reason="")
    meta.mark_deleted(add(meta, "4", []), actor="a", reason="")
    # a stays alive only as a delta reference of b
    assert meta.live_object_ids() == {obj(n).id for n in "abc"}
    assert meta.versions_using([obj("a").id, obj("c").id, obj("d").id]) == {obj("c").id: [v3]}


def test_update_delete_iterate(meta: MetaStore) -> None:
    meta.ensure_model("m")
    v = add(meta, "1", [obj("a"), obj("b", ref="a")])
    rebased = ObjectRow(obj("b").id, "tensor", "planes", 100, 60, None)
    meta.update_object(rebased)
    assert meta.get_objects([rebased.id])[rebased.id] == rebased
    with pytest.raises(ObjectNotFound):
        meta.update_object(obj("zzz"))
    with pytest.raises(Conflict):  # still linked
        meta.delete_objects([obj("a").id])
    meta.mark_deleted(v, actor="a", reason="")
    assert meta.live_object_ids() == set()
    assert sorted(o.id for o in meta.iter_objects()) == sorted([obj("a").id, obj("b").id])
    meta.delete_objects([obj("a").id, obj("b").id])
    assert list(meta.iter_objects()) == []


def test_iter_objects_pages(meta: MetaStore) -> None:
    meta.ensure_model("m")
    objs = [obj(str(i)) for i in range(2100)]
    add(meta, "many", objs)
    got = [o.id for o in meta.iter_objects()]
    assert got == sorted(o.id for o in objs)
    assert len(meta.version_objects(new_version("m", "many").id)) == 2100
