from __future__ import annotations

from datetime import UTC

import pytest
from meta_helpers import new_version, obj

from modelvc.errors import AlreadyExists, Conflict, ModelNotFound, RefNotFound, UsageError
from modelvc.meta.store import MetaStore


def commit(meta: MetaStore, model: str, tag: object, head: str | None = None, **kw: object):
    v = new_version(model, tag, **kw)  # type: ignore[arg-type]
    return meta.insert_version(
        v, branch="main", expected_head=head, create_branch=head is None, actor="alice"
    )


def test_models_get_or_create(meta: MetaStore) -> None:
    a = meta.ensure_model("bert")
    assert meta.ensure_model("bert") == a == meta.get_model("bert")
    meta.ensure_model("albert")
    assert [m.name for m in meta.list_models()] == ["albert", "bert"]
    assert a.created_at.tzinfo is UTC
    with pytest.raises(ModelNotFound):
        meta.get_model("nope")


def test_insert_and_read_back(meta: MetaStore) -> None:
    meta.ensure_model("m")
    v = new_version("m", 1, objects=[obj("w")])
    row = meta.insert_version(v, branch=None, expected_head=None, create_branch=False, actor="a")
    got = meta.get_version(v.id)
    assert got == row
    assert (got.number, got.model, got.params, got.lineage) == (1, "m", v.params, v.lineage)
    assert got.created_at == v.created_at and got.created_at.tzinfo is UTC
    assert [o.id for o in meta.version_objects(v.id)] == [obj("w").id]
    assert meta.list_refs("m") == []  # no branch given: no ref


def test_numbers_are_per_model_and_sequential(meta: MetaStore) -> None:
    meta.ensure_model("a")
    meta.ensure_model("b")
    head = None
    for i in range(3):
        head = commit(meta, "a", i, head).id
    assert commit(meta, "b", 0).number == 1
    assert [v.number for v in meta.list_versions("a")] == [3, 2, 1]
    assert meta.version_by_number("a", 2).id == new_version("a", 1).id
    with pytest.raises(RefNotFound):
        meta.version_by_number("a", 9)


def test_duplicate_id_already_exists_and_number_not_consumed(meta: MetaStore) -> None:
    meta.ensure_model("m")
    first = commit(meta, "m", 1)
    with pytest.raises(AlreadyExists):
        commit(meta, "m", 1, first.id)
    assert commit(meta, "m", 2, first.id).number == 2


def test_failed_cas_records_nothing(meta: MetaStore) -> None:
    meta.ensure_model("m")
    first = commit(meta, "m", 1)
    with pytest.raises(Conflict):  # RefMoved: head is first.id, not "stale"
        commit(meta, "m", 2, "0" * 64)
    with pytest.raises(RefNotFound):
        meta.get_version(new_version("m", 2).id)
    assert commit(meta, "m", 3, first.id).number == 2  # the number was given back


def test_unknown_model(meta: MetaStore) -> None:
    with pytest.raises(ModelNotFound):
        commit(meta, "ghost", 1)
    with pytest.raises(ModelNotFound):
        meta.list_versions("ghost")


def test_unserialisable_params_are_a_usage_error(meta: MetaStore) -> None:
    meta.ensure_model("m")
    v = new_version("m", 1)
    v.params["bad"] = object()
    with pytest.raises(UsageError):
        meta.insert_version(v, branch=None, expected_head=None, create_branch=False, actor="a")


def test_prefix_lookup(meta: MetaStore) -> None:
    meta.ensure_model("m")
    meta.ensure_model("n")
    a = commit(meta, "m", 1)
    b = commit(meta, "n", 1)
    assert [v.id for v in meta.versions_by_prefix(None, a.id[:6])] == [a.id]
    assert meta.versions_by_prefix("n", a.id[:6]) == []
    assert {v.id for v in meta.versions_by_prefix(None, "")} == {a.id, b.id}
    assert meta.versions_by_prefix(None, a.id[:4].upper())[0].id == a.id
    assert meta.versions_by_prefix(None, "%") == []  # LIKE wildcards are escaped
    assert meta.versions_by_prefix(None, "_") == []


def test_tombstone(meta: MetaStore) -> None:
    meta.ensure_model("m")
    v1 = commit(meta, "m", 1, objects=[obj("w")])
    v2 = commit(meta, "m", 2, v1.id, objects=[obj("w")])
    with pytest.raises(Conflict):  # main points at v2
        meta.mark_deleted(v2.id, actor="bob", reason="bad")
    meta.mark_deleted(v1.id, actor="bob", reason="leaked data")
    meta.mark_deleted(v1.id, actor="bob", reason="again")  # idempotent
    gone = meta.get_version(v1.id)
    assert gone.deleted_at is not None and gone.deleted_at.tzinfo is UTC
    assert [v.number for v in meta.list_versions("m")] == [2]
    assert [v.number for v in meta.list_versions("m", include_deleted=True)] == [2, 1]
    assert meta.version_objects(v1.id) == []
    assert meta.versions_using([obj("w").id]) == {obj("w").id: [v2.id]}
    # the number is never reused
    assert commit(meta, "m", 3, v2.id).number == 3
    with pytest.raises(RefNotFound):
        meta.mark_deleted("f" * 64, actor="bob", reason="")
    with pytest.raises(Conflict):  # a deleted version cannot become a ref target
        meta.set_ref("m", "t", "tag", expected=None, new=v1.id, actor="a", action="create",
                     create=True)  # fmt: skip


def test_tags_are_created_with_the_version_or_not_at_all(meta: MetaStore) -> None:
    """A commit's tags are part of its transaction: a tag that exists already (made by
    another writer after the caller checked) rolls back the version and its branch move."""
    from modelvc.meta.api import AuditEntry

    def tag(name: str) -> tuple[str, AuditEntry]:
        return name, AuditEntry(actor="alice", action="tag", model="m", target=f"m@{name}")

    meta.ensure_model("m")
    v1 = new_version("m", 1)
    meta.insert_version(v1, branch="main", expected_head=None, create_branch=True,
                        actor="alice", tags=[tag("t1")])
    assert meta.get_ref("m", "t1").version_id == v1.id and meta.get_ref("m", "t1").kind == "tag"
    audit_before = len(meta.audit_entries())
    v2 = new_version("m", 2)
    with pytest.raises(AlreadyExists):
        meta.insert_version(v2, branch="main", expected_head=v1.id, create_branch=False,
                            actor="alice", tags=[tag("t2"), tag("t1")])
    assert [v.id for v in meta.list_versions("m")] == [v1.id]
    assert meta.get_ref("m", "main").version_id == v1.id
    with pytest.raises(RefNotFound):
        meta.get_ref("m", "t2")
    assert len(meta.audit_entries()) == audit_before
    # The number was given back: the next version is v2.
    assert meta.insert_version(v2, branch="main", expected_head=v1.id, create_branch=False,
                               actor="alice", tags=[tag("t2")]).number == 2
    assert meta.get_ref("m", "t2").version_id == v2.id
