"""Registry.amend: a new version from its parent plus a few files, no checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelvc.errors import PathNotFound, RefMoved, UsageError
from modelvc.registry import Registry
from tests.conftest import write_model


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry.init(tmp_path / "repo")
    src = tmp_path / "src"
    write_model(src / "model.safetensors", 1)
    (src / "config.json").write_text('{"a": 1}\n')
    (src / "docs").mkdir()
    (src / "docs" / "a.md").write_text("a\n")
    (src / "docs" / "b.md").write_text("b\n")
    r.commit(src, model="m", message="v1", params={"lr": 0.1}, metrics={"acc": 0.9},
             author="t", cwd=tmp_path)
    return r


def test_amend_reuses_the_parents_files_as_they_are(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.resolve("m@v1")
    v2 = reg.amend("m", add={"README.md": b"# m\n", "config.json": b'{"a": 2}\n'},
                   delete=["docs/a.md"], message="readme", author="t")
    m1, m2 = reg.manifest("m@v1"), reg.manifest("m@v2")
    assert v2.parents == [v1.id] and v2.message == "readme"
    assert v2.params == {"lr": 0.1} and v2.metrics == {"acc": 0.9}  # the same weights
    assert m2.file("model.safetensors") == m1.file("model.safetensors")
    assert [f.path for f in m2.files] == ["README.md", "config.json", "docs/b.md",
                                          "model.safetensors"]
    assert v2.stored_size < 4096  # the README, the new config and the manifest
    linked = {o.id for o in reg.objects_of("m@v2")}
    assert {s.id for s in m1.file("model.safetensors").segments} <= linked  # kept alive
    out = tmp_path / "out"
    reg.checkout("m@v2", out)  # verified against every file's sha256
    assert (out / "README.md").read_bytes() == b"# m\n"
    assert (out / "config.json").read_bytes() == b'{"a": 2}\n'
    assert not (out / "docs" / "a.md").exists()
    assert reg.verify().ok
    v3 = reg.amend("m", delete_folders=["docs"], author="t")
    assert [f.path for f in reg.manifest(f"m@{v3.id}").files] == [
        "README.md", "config.json", "model.safetensors"]


def test_amend_refuses_what_cannot_apply(reg: Registry) -> None:
    with pytest.raises(PathNotFound):
        reg.amend("m", delete=["nope.txt"])
    with pytest.raises(UsageError, match="is a folder"):
        reg.amend("m", add={"docs": b"x"})
    with pytest.raises(UsageError, match="is a file"):
        reg.amend("m", add={"config.json/inner": b"x"})
    with pytest.raises(UsageError):
        reg.amend("m", add={"../escape": b"x"})
    with pytest.raises(UsageError, match="no files"):
        reg.amend("m", delete=["model.safetensors", "config.json"], delete_folders=["docs"])
    assert [v.number for v in reg.versions("m")] == [1]  # nothing recorded


def test_amend_on_a_moved_branch(reg: Registry) -> None:
    """An explicit parent that is no longer the head fails (RefMoved); without one the
    changes apply to the current head (the other writer's files stay)."""
    v1 = reg.resolve("m@v1").id
    reg.amend("m", add={"other.txt": b"theirs"}, author="other")
    with pytest.raises(RefMoved):
        reg.amend("m", parent=f"m@{v1}", add={"mine.txt": b"mine"})
    v3 = reg.amend("m", add={"mine.txt": b"mine"})
    paths = {f.path for f in reg.manifest(f"m@{v3.id}").files}
    assert {"other.txt", "mine.txt", "model.safetensors"} <= paths
