"""The Registry API end to end: commit, refs, channels, checkout, load, diff, du."""

from __future__ import annotations

import filecmp
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from modelvc.errors import (
    AlreadyExists,
    AmbiguousRef,
    Conflict,
    InvalidName,
    InvalidRef,
    PathNotFound,
    RefMoved,
    RefNotFound,
    UnsupportedFormat,
    UsageError,
)
from modelvc.registry import Registry
from tests.conftest import write_model


def test_commit_and_checkout_bit_exact(any_reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "m1" / "model.safetensors", 1)
    (tmp_path / "m1" / "config.json").write_text('{"hidden": 64, "act": "gelu"}')
    v1 = any_reg.commit(tmp_path / "m1", model="toy", message="base", params={"lr": 1e-3},
                        metrics={"acc": 0.8})
    write_model(tmp_path / "m2" / "model.safetensors", 2, base=base)
    (tmp_path / "m2" / "config.json").write_text('{"hidden": 64, "act": "relu"}')
    v2 = any_reg.commit(tmp_path / "m2", model="toy", message="ft", metrics={"acc": 0.85})
    assert (v1.number, v2.number) == (1, 2)
    assert v2.parents == [v1.id]
    assert len(v1.id) == 64 and v1.id != v2.id
    assert v1.author == "tester" and v1.params == {"lr": 1e-3}
    for ref, src in (("toy@v1", "m1"), ("toy@v2", "m2"), ("toy", "m2"), ("toy@main", "m2")):
        dest = tmp_path / f"out-{ref.replace('@', '_')}"
        res = any_reg.checkout(ref, dest)
        assert res.files == 2
        cmp = filecmp.dircmp(tmp_path / src, dest)
        assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
        for name in ("model.safetensors", "config.json"):
            assert (tmp_path / src / name).read_bytes() == (dest / name).read_bytes()
    assert any_reg.verify().ok


def test_delta_storage_is_smaller_than_a_full_copy(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base, scale=1e-4)
    v1 = reg.commit(tmp_path / "a.safetensors", model="toy")
    v2 = reg.commit(tmp_path / "b.safetensors", model="toy")
    assert v2.stored_size < 0.75 * v1.stored_size
    codecs = {o.codec for o in reg.objects_of("toy@v2") if o.kind == "tensor"}
    assert codecs & {"delta", "mixed"}
    # Re-committing identical content stores (almost) nothing new: only the manifest.
    v3 = reg.commit(tmp_path / "b.safetensors", model="toy", message="same bytes")
    assert v3.stored_size < 2000
    out = tmp_path / "out.safetensors"
    reg.checkout("toy@v2", out)
    assert out.read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_bf16_export_is_stored_as_a_cast_delta(reg: Registry, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(0)
    w = {f"w{i}": torch.from_numpy(rng.standard_normal((256, 256)).astype(np.float32))
         for i in range(4)}
    save_file(w, str(tmp_path / "fp32.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in w.items()}, str(tmp_path / "bf16.safetensors"))
    reg.commit(tmp_path / "fp32.safetensors", model="m")
    v2 = reg.commit(tmp_path / "bf16.safetensors", model="m", branch="export", parent="m@v1")
    assert v2.stored_size < 0.02 * v2.raw_size + 2000
    reg.checkout("m@export", tmp_path / "x.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "bf16.safetensors").read_bytes()


def test_ref_syntax(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    v1 = reg.commit(tmp_path / "a.safetensors", model="toy", tags=["first"])
    v2 = reg.commit(tmp_path / "b.safetensors", model="toy", branch="dev", parent="toy@v1")
    reg.promote("toy@v1", "production", reason="launch", create=True)
    assert reg.resolve("toy@v1").id == v1.id
    assert reg.resolve("toy@dev").id == v2.id
    assert reg.resolve("toy@main").id == v1.id
    assert reg.resolve("toy@production").id == v1.id
    assert reg.resolve("toy@first").id == v1.id
    assert reg.resolve(f"toy@{v2.id[:10]}").id == v2.id
    assert reg.resolve(f"toy@{v2.id}").id == v2.id
    with pytest.raises(RefNotFound):
        reg.resolve("toy@v9")
    with pytest.raises(RefNotFound):
        reg.resolve("toy@nope")
    with pytest.raises(InvalidRef):
        reg.resolve("toy@a@b")
    with pytest.raises(InvalidName):
        reg.resolve("a/b@v1")
    with pytest.raises(InvalidName):
        reg.commit(tmp_path / "a.safetensors", model="bad\x07name")
    with pytest.raises(InvalidName):
        reg.commit(tmp_path / "a.safetensors", model="toy", branch="../etc")
    with pytest.raises(PathNotFound):
        reg.commit(tmp_path / "missing", model="toy")


def test_ambiguous_id_prefix(reg: Registry, tmp_path: Path) -> None:
    from modelvc.meta.api import NewVersion

    write_model(tmp_path / "a.safetensors", 1)
    v1 = reg.commit(tmp_path / "a.safetensors", model="toy")
    # Two more rows whose ids share a prefix (ids are only keys to the metadata layer).
    for tail in ("1", "2"):
        reg._meta.insert_version(
            NewVersion(id="abcdef" + tail * 58, model="toy", author="t", message="",
                       parents=[v1.id], params={}, metrics={}, lineage={}, raw_size=0,
                       stored_size=0, created_at=datetime.now(UTC)),
            branch=None, expected_head=None, create_branch=False, actor="t")
    with pytest.raises(AmbiguousRef) as err:
        reg.resolve("toy@abcdef")
    assert "2 versions" in str(err.value)
    assert reg.resolve("toy@abcdef1").number == 2


def test_channels_promote_rollback_history(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    vs = []
    for i in range(3):
        write_model(tmp_path / f"m{i}.safetensors", 10 + i, base=base)
        vs.append(reg.commit(tmp_path / f"m{i}.safetensors", model="toy"))
    t0 = datetime.now(UTC)
    reg.promote("toy@v1", "production", reason="first", create=True)
    time.sleep(0.01)
    t1 = datetime.now(UTC)
    reg.promote("toy@v2", "production")
    reg.promote("toy@v3", "production")
    time.sleep(0.01)
    t2 = datetime.now(UTC)
    assert reg.rollback("toy", "production", reason="bad").version_id == vs[1].id
    assert reg.rollback("toy", "production").version_id == vs[0].id
    with pytest.raises(Conflict):
        reg.rollback("toy", "production")
    assert reg.rollback("toy", "production", to="toy@v3").version_id == vs[2].id
    moves = reg.history("toy", "production")
    assert [m.action for m in moves] == ["promote", "promote", "promote", "rollback",
                                         "rollback", "rollback"]
    assert moves[0].old is None and moves[0].new == vs[0].id and moves[0].reason == "first"
    assert all(m.actor == "tester" for m in moves)
    assert reg.at("toy", "production", t0) is None
    at1 = reg.at("toy", "production", t1)
    at2 = reg.at("toy", "production", t2)
    assert at1 is not None and at1.id == vs[0].id
    assert at2 is not None and at2.id == vs[2].id
    # Compare-and-swap: a promotion that expected another target is refused.
    with pytest.raises(RefMoved):
        reg.promote("toy@v1", "production", expected=vs[0].id)
    assert reg.resolve("toy@production").id == vs[2].id


def test_tags_are_immutable_and_names_unique(reg: Registry, tmp_path: Path) -> None:
    write_model(tmp_path / "a.safetensors", 1)
    reg.commit(tmp_path / "a.safetensors", model="toy", tags=["gold"])
    with pytest.raises(AlreadyExists):
        reg.tag("toy@v1", "gold")
    with pytest.raises(UsageError, match="needs a reason"):  # a tag goes only with one
        reg.delete_ref("toy", "gold")
    with pytest.raises((AlreadyExists, Conflict)):
        reg.create_branch("toy", "gold")
    with pytest.raises(InvalidName):
        reg.tag("toy@v1", "v3")  # would shadow a version number


def test_branch_created_at_parent_and_explicit_parent_conflict(reg: Registry,
                                                               tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    v1 = reg.commit(tmp_path / "a.safetensors", model="toy")
    v2 = reg.commit(tmp_path / "b.safetensors", model="toy")
    v3 = reg.commit(tmp_path / "b.safetensors", model="toy", branch="exp", parent="toy@v1")
    assert v3.parents == [v1.id]
    assert reg.resolve("toy@exp").id == v3.id
    with pytest.raises(RefMoved):
        reg.commit(tmp_path / "a.safetensors", model="toy", branch="main", parent="toy@v1")
    assert reg.resolve("toy@main").id == v2.id
    assert [v.number for v in reg.log("toy@exp")] == [3, 1]


def test_load_tensors_on_demand(reg: Registry, tmp_path: Path) -> None:
    t = write_model(tmp_path / "a.safetensors", 1)
    reg.commit(tmp_path / "a.safetensors", model="toy")
    tensors = reg.load("toy@v1")
    assert set(tensors) == set(t)
    for k, v in t.items():
        np.testing.assert_array_equal(tensors[k], v)
        assert tensors[k].dtype == v.dtype
    torch_tensors = reg.load("toy@v1", framework="torch")
    assert tuple(torch_tensors["embed.weight"].shape) == (300, 64)


def test_diff_reports_tensor_and_json_changes(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "m1" / "model.safetensors", 1)
    (tmp_path / "m1" / "config.json").write_text('{"a": 1, "nested": {"b": 2}}')
    reg.commit(tmp_path / "m1", model="toy", params={"lr": 0.1}, metrics={"acc": 0.5})
    t2 = dict(base)
    t2["head.weight"] = (base["head.weight"] * 2).astype(np.float16)
    from safetensors.numpy import save_file

    (tmp_path / "m2").mkdir()
    save_file(t2, str(tmp_path / "m2" / "model.safetensors"), metadata={"format": "np"})
    (tmp_path / "m2" / "config.json").write_text('{"a": 1, "nested": {"b": 3}, "c": true}')
    (tmp_path / "m2" / "README.md").write_text("hi")
    reg.commit(tmp_path / "m2", model="toy", params={"lr": 0.2}, metrics={"acc": 0.6})
    d = reg.diff("toy@v1", "toy@v2")
    assert d.files_added == ["README.md"]
    assert set(d.files_changed) == {"config.json", "model.safetensors"}
    assert [t.name for t in d.tensors] == ["head.weight"]
    ch = d.tensors[0]
    nonzero = np.count_nonzero(base["head.weight"]) / base["head.weight"].size
    assert ch.changed_fraction == pytest.approx(nonzero)
    assert ch.rel_l2 == pytest.approx(1.0, rel=1e-3)
    assert d.tensors_unchanged == 4
    keys = {c.key: (c.old, c.new) for c in d.json["config.json"]}
    assert keys == {"nested.b": (2, 3), "c": (None, True)}
    assert [(c.key, c.old, c.new) for c in d.params] == [("lr", 0.1, 0.2)]
    assert [(c.key, c.old, c.new) for c in d.metrics] == [("acc", 0.5, 0.6)]


def test_stats_raw_vs_stored(reg: Registry, tmp_path: Path) -> None:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    reg.commit(tmp_path / "a.safetensors", model="toy")
    reg.commit(tmp_path / "b.safetensors", model="toy")
    s = reg.stats("toy")
    m = s["models"]["toy"]
    assert [v["number"] for v in m["versions"]] == [1, 2]
    assert m["raw"] == 2 * (tmp_path / "a.safetensors").stat().st_size
    assert 0 < m["stored"] < m["raw"]
    total = reg.stats()
    assert total["stored"] >= m["stored"] and total["objects"] > 0


def test_lineage_captured(reg: Registry, tmp_path: Path) -> None:
    write_model(tmp_path / "a.safetensors", 1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    v = reg.commit(tmp_path / "a.safetensors", model="toy", data=[data], cwd=tmp_path)
    assert v.lineage["env"]["python"].count(".") == 2
    assert "numpy" in v.lineage["env"]["packages"]
    assert v.lineage["data"][0]["files"] == 1 and len(v.lineage["data"][0]["blake3"]) == 64
    assert "git" not in v.lineage  # tmp_path is not a git work tree


def test_lineage_captured_during_the_encode_and_clashes_refused_first(
        reg: Registry, tmp_path: Path) -> None:
    """Without data paths, lineage (git in a subprocess) is captured while the files
    are encoded; a caller's key that clashes with a captured one is still refused
    before any object is written."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    write_model(tmp_path / "a.safetensors", 1)
    v = reg.commit(tmp_path / "a.safetensors", model="toy", cwd=tmp_path,
                   lineage={"derived_from": "toy@v0"})
    assert v.lineage["derived_from"] == "toy@v0" and "git" in v.lineage
    assert "numpy" in v.lineage["env"]["packages"]
    before = reg.stats()["objects"]
    write_model(tmp_path / "b.safetensors", 2)
    with pytest.raises(UsageError, match="recorded by modelvc itself"):
        reg.commit(tmp_path / "b.safetensors", model="toy", lineage={"env": {}})
    assert reg.stats()["objects"] == before


def test_reopen_and_format_refusal(tmp_path: Path) -> None:
    import json

    write_model(tmp_path / "a.safetensors", 1)
    with Registry.init(tmp_path / "p") as r:
        r.commit(tmp_path / "a.safetensors", model="toy")
    with Registry.open(tmp_path / "p") as r:
        assert r.resolve("toy").number == 1
    with pytest.raises(AlreadyExists):
        Registry.init(tmp_path / "p")
    cfg = tmp_path / "p" / ".modelvc" / "config.json"
    data = json.loads(cfg.read_text())
    data["format"] = 99
    cfg.chmod(0o644)
    cfg.write_text(json.dumps(data))
    with pytest.raises(UnsupportedFormat):
        Registry.open(tmp_path / "p")


def test_steady_training_steps_are_extrapolated(reg: Registry, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    w = rng.standard_normal((512, 256)).astype(np.float32)
    step = (rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
    sizes = []
    for i in range(4):
        save_file({"w": w}, str(tmp_path / f"c{i}.safetensors"))
        sizes.append(reg.commit(tmp_path / f"c{i}.safetensors", model="m").stored_size)
        w = w * np.float32(0.999) + step  # weight decay plus a steady update
    assert sizes[2] < 0.7 * sizes[1]  # v3 predicted from v2 + (v2 - v1)
    codecs = {o.codec for o in reg.objects_of("m@v3") if o.kind == "tensor"}
    assert codecs == {"extrap"}
    for i in range(4):
        with Registry.open(reg._layout.root) as fresh:  # nothing cached
            fresh.checkout(f"m@v{i + 1}", tmp_path / f"o{i}.safetensors")
        assert (tmp_path / f"o{i}.safetensors").read_bytes() == (
            tmp_path / f"c{i}.safetensors").read_bytes()
    assert reg.verify().ok
    # Deleting the middle version re-bases the extrapolated one; it still checks out.
    reg.delete("m@v3")
    with Registry.open(reg._layout.root) as fresh:
        fresh.checkout("m@v4", tmp_path / "o4.safetensors")
    assert (tmp_path / "o4.safetensors").read_bytes() == (tmp_path / "c3.safetensors").read_bytes()
    reg.gc(dry_run=False, grace_seconds=0)
    assert reg.verify().ok


def test_commit_with_an_existing_tag_changes_nothing(any_reg: Registry, tmp_path: Path) -> None:
    """Issue 11.3: the tags are checked before anything is written; the version and
    its tags are recorded in one transaction."""
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    v1 = any_reg.commit(tmp_path / "a.safetensors", model="toy", tags=["t1"])
    objects = {o.key for o in any_reg._store.list()}
    audit = len(any_reg._meta.audit_entries())
    for tags in (["t1"], ["t2", "t1"], ["main"]):
        with pytest.raises(AlreadyExists) as err:
            any_reg.commit(tmp_path / "b.safetensors", model="toy", tags=tags)
        assert "nothing was committed" in (err.value.hint or "")
    assert [v.id for v in any_reg.log("toy")] == [v1.id]
    assert any_reg.resolve("toy@main").id == v1.id
    assert {r.name for r in any_reg.refs("toy")} == {"main", "t1"}
    assert {o.key for o in any_reg._store.list()} == objects  # not even orphans
    assert len(any_reg._meta.audit_entries()) == audit
    v2 = any_reg.commit(tmp_path / "b.safetensors", model="toy", tags=["t2", "t3", "t3"])
    assert v2.number == 2
    assert any_reg.resolve("toy@t2").id == any_reg.resolve("toy@t3").id == v2.id
