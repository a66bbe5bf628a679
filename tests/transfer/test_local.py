"""push / pull / clone between two registries in this process (no server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelvc.errors import AlreadyExists, Conflict, CorruptObject, RefNotFound
from modelvc.registry import Registry
from modelvc.transfer import add_remote, clone, local_end, pull, push, remotes
from tests.transfer.conftest import Trainer


def test_push_sends_history_then_only_what_is_missing(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a, b = make_reg("a"), make_reg("b")
    t = Trainer(a, tmp_path)
    v1, v2 = t.commit(), t.commit()
    r = push(a, b, ["bert"])
    assert r.versions == [v1, v2] and r.objects_skipped == 0
    assert [(v.number, v.id) for v in b.versions("bert")] == [(2, v2), (1, v1)]
    v3 = t.commit()
    r = push(a, b, ["bert@main"])
    assert r.versions == [v3] and r.objects_skipped > 0
    assert r.refs[0].result == "fast-forward"
    assert b.resolve("bert@main").id == v3
    again = push(a, b, ["bert"])
    assert again.versions == [] and again.objects_sent == 0
    assert again.refs[0].result == "up to date"
    report = b.verify()
    assert not report.corrupt and not report.broken_versions
    assert b.load("bert@main")["embed.weight"].tobytes() == \
        a.load("bert@main")["embed.weight"].tobytes()


def test_branch_push_is_fast_forward_only_unless_forced(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a, b = make_reg("a"), make_reg("b")
    t = Trainer(a, tmp_path)
    t.commit()
    push(a, b, ["bert"])
    # b moves on by itself: a's next commit no longer fast-forwards b@main.
    tb = Trainer(b, tmp_path / "b-side")
    tb.commit()
    ours = t.commit()
    with pytest.raises(Conflict, match="fast-forward"):
        push(a, b, ["bert@main"])
    r = push(a, b, ["bert@main"], force=True)
    assert r.refs[0].result == "forced" and b.resolve("bert@main").id == ours
    assert b.history("bert", "main")[-1].action == "force"


def test_channels_travel_only_when_asked_and_tags_never_move(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a, b = make_reg("a"), make_reg("b")
    t = Trainer(a, tmp_path)
    v1 = t.commit()
    a.tag(f"bert@{v1}", "release-1")
    a.promote(f"bert@{v1}", "production", create=True)
    push(a, b, ["bert"])
    assert {r.name for r in b.refs("bert")} == {"main", "release-1"}
    push(a, b, ["bert@production"])
    assert b.resolve("bert@production").id == v1
    assert b.history("bert", "production")[-1].action == "promote"
    with pytest.raises(RefNotFound):
        push(a, b, ["bert@nope"])


def test_pull_and_clone_with_a_named_remote(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a = make_reg("a")
    t = Trainer(a, tmp_path)
    t.commit()
    t.commit(branch="exp")
    a.promote("bert@v1", "staging", create=True)
    c, r = clone(tmp_path / "a", tmp_path / "c")
    try:
        assert remotes(c) == {"origin": str(tmp_path / "a")}
        assert {x.name for x in c.refs("bert")} == {"main", "exp", "staging"}
        assert len(r.versions) == 2
        v3 = t.commit()
        r2 = pull(c, "origin", ["bert@main"])
        assert r2.versions == [v3] and c.resolve("bert@main").id == v3
    finally:
        c.close()
    d = make_reg("d")
    add_remote(d, "up", str(tmp_path / "a"))
    pull(d, "up", [])
    assert sorted(d.models()) == ["bert"]
    assert not d.verify().corrupt


def test_a_model_without_versions_is_skipped_and_a_clone_run_again_resumes(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    """An empty model (an MLflow create_registered_model, a Hub create_repo) broke every
    clone and pull of the whole registry; a clone run again failed on its own folder."""
    a = make_reg("a")
    Trainer(a, tmp_path).commit()
    a._meta.ensure_model("empty")  # as the MLflow and Hub APIs create one
    c, r = clone(tmp_path / "a", tmp_path / "c")
    c.close()
    assert len(r.versions) == 1
    again, r2 = clone(tmp_path / "a", tmp_path / "c")  # resumes: nothing left to send
    try:
        assert r2.versions == [] and [x.result for x in r2.refs] == ["up to date"]
        assert again.models() == ["bert"]
    finally:
        again.close()
    with pytest.raises(RefNotFound, match="nothing to transfer"):
        pull(make_reg("d"), tmp_path / "a", ["empty"])  # named: still said
    make_reg("e")  # a registry that is not a clone of a: no resuming into it
    with pytest.raises(AlreadyExists):
        clone(tmp_path / "a", tmp_path / "e")


def test_the_receiver_refuses_objects_that_do_not_match_their_id(
        make_reg: Callable[[str], Registry], tmp_path: Path) -> None:
    a, b = make_reg("a"), make_reg("b")
    t = Trainer(a, tmp_path)
    v1, v2 = t.commit(), t.commit()
    rows = a._meta.version_objects(v1)
    tensor = next(r for r in rows if r.kind == "tensor")
    blob = next(r for r in rows if r.kind == "blob")
    delta = next(r for r in a._meta.version_objects(v2) if r.ref_id)
    sink = local_end(b)
    good = a._store.get(tensor.id)
    flipped = good[:10] + bytes([good[10] ^ 1]) + good[11:]
    bad = [(tensor.id, flipped), (blob.id, good), (tensor.id, b"MVT1"),
           (delta.id, a._store.get(delta.id))]  # a delta whose reference never arrived
    for oid, data in bad:
        with pytest.raises(CorruptObject):
            sink.write_pack("bert", [(oid, data)])
    assert not b._store.has_many([tensor.id, blob.id, delta.id])
