"""One suite, every backend: the same calls give the same results and the same errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import (
    AlreadyExists,
    ModelNotFound,
    PathNotFound,
    RefMoved,
    RefNotFound,
    UsageError,
)
from tests.conftest import write_model

from .conftest import ACTOR


def _folder(tmp: Path, seed: int = 0, base: dict[str, np.ndarray] | None = None
            ) -> tuple[Path, dict[str, np.ndarray]]:
    d = tmp / f"model-{seed}"
    tensors = write_model(d / "model.safetensors", seed, base=base)
    (d / "config.json").write_text(json.dumps({"hidden": 64, "seed": seed}))
    return d, tensors


@pytest.mark.verbs("commit", "resolve", "models", "versions", "log", "manifest")
def test_commit_resolve_log(api: Any, model: str, tmp_path: Path) -> None:
    d, _ = _folder(tmp_path)
    v1 = api.commit(d, model=model, message="first", params={"lr": 0.1}, metrics={"acc": 0.5})
    assert (v1.model, v1.number, v1.author, v1.message) == (model, 1, ACTOR, "first")
    assert v1.params == {"lr": 0.1} and v1.metrics == {"acc": 0.5}
    for ref in (model, f"{model}@v1", f"{model}@main", f"{model}@{v1.id[:10]}"):
        assert api.resolve(ref) == v1
    assert model in api.models()
    (d / "config.json").write_text("{}")
    v2 = api.commit(d, model=model, tags=["t2"])
    assert v2.parents == [v1.id] and v2.number == 2
    assert [v.number for v in api.versions(model)] == [2, 1]
    assert [v.id for v in api.log(f"{model}@t2")] == [v2.id, v1.id]
    m = api.manifest(f"{model}@v1")
    assert m.id == v1.id and sorted(f.path for f in m.files) == ["config.json",
                                                                 "model.safetensors"]
    with pytest.raises(ModelNotFound):
        api.resolve("no-such-model")
    with pytest.raises(ModelNotFound):
        api.versions("no-such-model")
    with pytest.raises(RefNotFound):
        api.resolve(f"{model}@nope")


@pytest.mark.verbs("commit")
def test_commit_adds_lineage_entries_but_never_replaces_captured_ones(api: Any, model: str,
                                                                     tmp_path: Path) -> None:
    d, _ = _folder(tmp_path)
    extra = {"derived_from": {"version": "0" * 64, "recipe": "cast", "params": {"x": 1}}}
    v = api.commit(d, model=model, lineage=extra)
    assert v.lineage["derived_from"] == extra["derived_from"] and "env" in v.lineage
    assert api.resolve(f"{model}@v1").lineage["derived_from"] == extra["derived_from"]
    with pytest.raises(UsageError, match="recorded by modelvc itself"):
        api.commit(d, model=model, lineage={"data": []})
    assert [x.number for x in api.versions(model)] == [1]


@pytest.mark.verbs("commit")
def test_fine_tune_commit_sends_only_missing_segments(api: Any, model: str, tmp_path: Path,
                                                      is_remote: bool) -> None:
    d, base = _folder(tmp_path)
    v1 = api.commit(d, model=model)
    tuned = dict(base)
    tuned["layer.0.weight"] = base["layer.0.weight"] + np.float32(1e-3)
    save_file(tuned, str(d / "model.safetensors"), metadata={"format": "np"})
    v2 = api.commit(d, model=model)
    assert v2.parents == [v1.id]
    if is_remote:  # the header and the other tensors were already there
        assert api.last_upload_bytes == tuned["layer.0.weight"].nbytes
    # Delta against the parent's tensor, chosen by the server like a local commit.
    assert v2.stored_size < tuned["layer.0.weight"].nbytes * 0.6
    again = api.commit(d, model=model, branch="copy")
    assert again.stored_size < 4000  # only its manifest is new
    if is_remote:
        assert api.last_upload_bytes == 0


@pytest.mark.verbs("create_branch", "tag", "refs", "delete_ref", "history")
def test_branches_and_tags(api: Any, model: str, tmp_path: Path) -> None:
    d, _ = _folder(tmp_path)
    v1 = api.commit(d, model=model)
    row = api.create_branch(model, "exp", at=f"{model}@v1")
    assert (row.kind, row.version_id) == ("branch", v1.id)
    api.tag(f"{model}@v1", "release-1")
    kinds = {(r.name, r.kind) for r in api.refs(model)}
    assert kinds == {("main", "branch"), ("exp", "branch"), ("release-1", "tag")}
    assert [r.name for r in api.refs(model, kind="tag")] == ["release-1"]
    with pytest.raises(AlreadyExists):
        api.create_branch(model, "exp")
    with pytest.raises(UsageError, match="needs a reason"):
        api.delete_ref(model, "release-1")
    api.delete_ref(model, "exp", reason="done")
    assert {r.name for r in api.refs(model) if r.version_id} == {"main", "release-1"}
    moves = api.history(model, name="exp")
    assert [m.action for m in moves] == ["create", "delete"] and moves[-1].actor == ACTOR


@pytest.mark.verbs("promote", "rollback", "history", "at")
def test_promote_rollback_history_at(api: Any, model: str, tmp_path: Path) -> None:
    d, base = _folder(tmp_path)
    v1 = api.commit(d, model=model)
    _folder(tmp_path, 1, base)
    v2 = api.commit(tmp_path / "model-1", model=model)
    # Creating a channel is explicit on every backend (a typo must not make one).
    with pytest.raises(RefNotFound, match="no channel 'production'") as missing:
        api.promote(f"{model}@v1", "production", reason="first")
    assert "create=True" in str(missing.value.hint) and "--create" in str(missing.value.hint)
    assert api.refs(model, "channel") == []
    api.promote(f"{model}@v1", "production", reason="first", create=True)
    between = datetime.now(UTC)
    api.promote(f"{model}@v2", "production")
    assert api.resolve(f"{model}@production") == v2
    with pytest.raises(RefMoved):
        api.promote(f"{model}@v1", "production", expected=v1.id)
    back = api.rollback(model, "production", reason="bad")
    assert back.version_id == v1.id
    hist = api.history(model, name="production")
    assert [m.action for m in hist] == ["promote", "promote", "rollback"]
    assert {m.actor for m in hist} == {ACTOR}
    assert api.at(model, "production", when=between) == v1
    assert api.at(model, "production", when=datetime(2000, 1, 1, tzinfo=UTC)) is None
    api.rollback(model, "production", to=f"{model}@v2")
    assert api.resolve(f"{model}@production").id == v2.id


@pytest.mark.verbs("checkout", "load")
def test_checkout_bit_exact_and_load(api: Any, model: str, tmp_path: Path) -> None:
    d, tensors = _folder(tmp_path)
    (d / "sub").mkdir()
    (d / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4000)
    api.commit(d, model=model)
    out = tmp_path / "out"
    res = api.checkout(model, out)
    assert res.files == 3
    for rel in ("model.safetensors", "config.json", "sub/weights.bin"):
        assert (out / rel).read_bytes() == (d / rel).read_bytes()
    with pytest.raises(AlreadyExists):
        api.checkout(model, out)
    api.checkout(model, out, force=True)
    single = tmp_path / "one.safetensors"
    write_model(single, 7)
    api.commit(single, model=model, branch="file")
    api.checkout(f"{model}@file", tmp_path / "copy.safetensors")
    assert (tmp_path / "copy.safetensors").read_bytes() == single.read_bytes()
    loaded = api.load(model)
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(loaded[k], v)


@pytest.mark.verbs("diff", "stats", "verify")
def test_diff_stats_verify(api: Any, model: str, tmp_path: Path) -> None:
    d, base = _folder(tmp_path)
    api.commit(d, model=model, metrics={"acc": 0.5})
    _folder(tmp_path, 1, base)
    api.commit(tmp_path / "model-1", model=model, metrics={"acc": 0.6})
    diff = api.diff(f"{model}@v1", f"{model}@v2")
    assert {t.name for t in diff.tensors} == {"embed.weight", "layer.0.weight", "layer.0.bias",
                                              "head.weight"}
    assert diff.files_changed == ["config.json", "model.safetensors"]
    assert [(c.key, c.old, c.new) for c in diff.metrics] == [("acc", 0.5, 0.6)]
    stats = api.stats(model=model)
    assert len(stats["models"][model]["versions"]) == 2
    report = api.verify()
    assert report.corrupt == {} and report.checked > 0


@pytest.mark.verbs("audit")
def test_audit_pages_by_entry_id(api: Any, model: str, tmp_path: Path) -> None:
    d, _ = _folder(tmp_path)
    api.commit(d, model=model)
    for i in range(4):
        api.tag(f"{model}@v1", f"t{i}")
    trail = api.audit(model=model)
    ids = [e.id for e in trail]
    assert len(ids) == 5 and ids == sorted(ids)
    assert [e.id for e in api.audit(model=model, limit=2)] == ids[:2]
    assert [e.id for e in api.audit(model=model, limit=2, newest=True)] == ids[-2:]
    older = api.audit(model=model, before=ids[-2], limit=2, newest=True)
    assert [e.id for e in older] == ids[-4:-2]
    assert [e.id for e in api.audit(model=model, after=ids[0], limit=2)] == ids[1:3]
    assert [e.id for e in api.audit(model=model, after=ids[0], before=ids[3])] == ids[1:3]
    assert api.audit(model=model, after=ids[-1]) == []
    assert [e.action for e in api.audit(model=model, action="tag", limit=1, newest=True)
            ] == ["tag"]
    with pytest.raises(UsageError):
        api.audit(model=model, limit=0)


@pytest.mark.verbs("amend", "checkout")
def test_amend_reuses_the_parents_files(api: Any, model: str, tmp_path: Path) -> None:
    d, _ = _folder(tmp_path)
    (d / "docs").mkdir()
    (d / "docs" / "a.md").write_text("a")
    v1 = api.commit(d, model=model, params={"lr": 0.1})
    v2 = api.amend(model, add={"README.md": b"# hello\n"}, delete=["config.json"],
                   delete_folders=["docs"], message="readme")
    assert (v2.number, v2.parents, v2.author, v2.message) == (2, [v1.id], ACTOR, "readme")
    assert v2.params == {"lr": 0.1}  # the same weights: the parent's params
    m1, m2 = api.manifest(f"{model}@v1"), api.manifest(f"{model}@main")
    assert sorted(f.path for f in m2.files) == ["README.md", "model.safetensors"]
    weights = {f.path: f for f in m1.files}["model.safetensors"]
    assert {f.path: f for f in m2.files}["model.safetensors"].segments == weights.segments
    out = tmp_path / "out"
    api.checkout(f"{model}@v2", out)
    assert (out / "README.md").read_bytes() == b"# hello\n"
    assert (out / "model.safetensors").read_bytes() == (d / "model.safetensors").read_bytes()
    with pytest.raises(RefMoved):  # an explicit parent must be the head
        api.amend(model, parent=f"{model}@v1", add={"x.txt": b"x"})
    with pytest.raises(PathNotFound):
        api.amend(model, delete=["no-such-file"])
    assert [v.number for v in api.versions(model)] == [2, 1]


@pytest.mark.verbs("commit_files", "run", "checkout")
def test_commit_files_and_runs_from_memory(api: Any, model: str, tmp_path: Path) -> None:
    d, tensors = _folder(tmp_path)
    v1 = api.commit(d, model=model)
    state = {k: v + 1 for k, v in tensors.items()}
    v2 = api.commit_files({"model.safetensors": state, "config.json": b'{"hidden": 64}'},
                          model=model, metrics={"acc": 0.6}, lineage={"note": "memory"})
    assert (v2.number, v2.parents, v2.metrics, v2.lineage["note"]) == (2, [v1.id],
                                                                       {"acc": 0.6}, "memory")
    files = {f.path: f for f in api.manifest(f"{model}@v2").files}
    assert files["model.safetensors"].format == "safetensors"
    assert files["config.json"].format == "json"
    out = tmp_path / "out"
    api.checkout(f"{model}@v2", out)
    from safetensors.numpy import load_file

    got = load_file(out / "model.safetensors")
    assert sorted(got) == sorted(state)
    assert all(np.array_equal(got[k], state[k]) for k in state)
    assert (out / "config.json").read_bytes() == b'{"hidden": 64}'
    # The same tensors from a file are the same objects (deduplicated across the two).
    save_file(state, tmp_path / "again.safetensors")
    v3 = api.commit(tmp_path / "again.safetensors", model=model, branch="file")
    again = {s.tensor: s.id for s in api.manifest(f"{model}@{v3.id}").files[0].segments if s.tensor}
    assert again == {s.tensor: s.id for s in files["model.safetensors"].segments if s.tensor}
    for bad in ({}, {"../x": b"x"}, {"x": 3}):
        with pytest.raises(UsageError):
            api.commit_files(bad, model=model)
    assert [v.number for v in api.versions(model)] == [3, 2, 1]
    with api.run(model=model, branch="run", params={"lr": 0.1}, best="loss") as run:
        for step, loss in ((5, 0.9), (10, 0.4), (15, 0.7)):
            run.commit({"w": np.full(4, step, np.float32)}, step=step, metrics={"loss": loss})
    assert [v.metrics for v in api.log(f"{model}@run")] == [
        {"loss": 0.7, "step": 15}, {"loss": 0.4, "step": 10}, {"loss": 0.9, "step": 5}]
    best = api.resolve(f"{model}@run-best")
    assert (best.metrics["step"], best.params, best.lineage["run"]) == (
        10, {"lr": 0.1}, {"id": run.id, "step": 10})


@pytest.mark.verbs("storage")
def test_storage_per_file(api: Any, model: str, tmp_path: Path) -> None:
    d, base = _folder(tmp_path)
    api.commit(d, model=model)
    _folder(tmp_path, 1, base)
    api.commit(tmp_path / "model-1", model=model)
    for ref in (f"{model}@v1", f"{model}@v2"):
        m = api.manifest(ref)
        files = api.storage(ref)
        assert [f.path for f in files] == [f.path for f in m.files]
        for f, entry in zip(files, m.files, strict=True):
            assert f.raw_size == entry.size
            assert f.objects == len({s.id for s in entry.segments})
            assert f.stored_size == sum(f.codecs.values()) > 0
    v1 = {f.path: f for f in api.storage(f"{model}@v1")}
    v2 = {f.path: f for f in api.storage(f"{model}@v2")}
    # The fine-tuned weights are stored as deltas against v1's: far fewer bytes.
    weights = v2["model.safetensors"]
    assert weights.stored_size < v1["model.safetensors"].stored_size
    assert "delta" in weights.codecs
    with pytest.raises(RefNotFound):
        api.storage(f"{model}@v9")


@pytest.mark.verbs("delete", "gc", "audit", "verify_audit")
def test_delete_gc_and_audit(api: Any, model: str, tmp_path: Path) -> None:
    d, base = _folder(tmp_path)
    v1 = api.commit(d, model=model)
    _folder(tmp_path, 1, base)
    api.commit(tmp_path / "model-1", model=model)
    api.promote(f"{model}@v2", "production", create=True)
    api.delete(f"{model}@v1", reason="leaked data")
    with pytest.raises(RefNotFound):
        api.resolve(f"{model}@v1")
    assert api.resolve(f"{model}@v1", deleted=True).deleted_at is not None
    gc = api.gc(dry_run=True, grace_seconds=0)
    assert gc.dry_run and gc.live > 0
    # a negative grace period: the same words and hint everywhere (remotely it was the
    # API schema's "body.grace_seconds: Input should be greater than or equal to 0")
    with pytest.raises(UsageError, match=r"^invalid grace period -5(\.0)?: give seconds >= 0"
                       ) as err:
        api.gc(dry_run=True, grace_seconds=-5)
    assert "the default is 3600" in (err.value.hint or "")
    api.checkout(f"{model}@production", tmp_path / "out")  # survives the delete
    trail = api.audit(model=model)
    assert [e.action for e in trail] == ["commit", "commit", "promote", "delete"]
    assert {e.actor for e in trail} == {ACTOR}
    assert api.audit(model=model, channel="production")[0].after["version"] != v1.id
    with pytest.raises(UsageError, match="a channel filter needs its model"):
        api.audit(channel="production")  # it was ignored: the whole trail came back
    assert api.verify_audit() == []


@pytest.mark.verbs("commit", "versions")
def test_commit_with_a_taken_tag_records_nothing(api: Any, model: str, tmp_path: Path) -> None:
    """Issue 11.3: a commit whose tag exists fails before anything is recorded."""
    d, _ = _folder(tmp_path)
    v1 = api.commit(d, model=model, tags=["t1"])
    (d / "config.json").write_text("{}")
    with pytest.raises(AlreadyExists):
        api.commit(d, model=model, tags=["t2", "t1"])
    assert [v.id for v in api.versions(model)] == [v1.id]
    assert api.resolve(f"{model}@main").id == v1.id
    with pytest.raises(RefNotFound):
        api.resolve(f"{model}@t2")
