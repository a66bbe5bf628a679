"""filehash: the sha256 of files hashed early, used only for the file as it still is."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelvc.errors import PathNotFound, UsageError
from modelvc.filehash import claim, collect_files, digest_of, early_sha256, start_sha256
from modelvc.registry import Registry
from tests.conftest import write_model


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_early_digest_is_the_files_and_handed_out_once(tmp_path: Path) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(os.urandom(3 << 20) + b"tail")  # several buffer reads
    small.write_bytes(b"x")
    start_sha256([small, big])
    assert early_sha256(big, big.stat()) == sha(big)
    assert early_sha256(small, small.stat()) == sha(small)
    assert early_sha256(big, big.stat()) is None  # taken: the commit hashes it itself


def test_digest_of_another_file_than_the_one_opened_is_none(tmp_path: Path) -> None:
    """The commit's stat of the file it opened must be the hashed file's."""
    f, other = tmp_path / "model.bin", tmp_path / "other.bin"
    f.write_bytes(b"a" * 1000)
    other.write_bytes(b"a" * 1000)  # same size and content, another inode
    start_sha256([f])
    assert early_sha256(f, other.stat()) is None


def test_a_file_rewritten_meanwhile_gets_its_own_digest_or_none(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"a" * 1000)
    start_sha256([f])
    f.write_bytes(b"b" * 1001)  # before, during or after the early hash
    assert early_sha256(f, f.stat()) in (None, sha(f))


def test_missing_file_gets_none(tmp_path: Path) -> None:
    gone = tmp_path / "gone.bin"
    gone.write_bytes(b"1")
    st = gone.stat()
    gone.unlink()
    start_sha256([gone])
    assert early_sha256(gone, st) is None


def test_commit_records_the_committed_bytes_digest(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed early, then rewritten before the commit: the version's sha256 is of what
    it stored, which checks out bit-exact."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    w = tmp_path / "w"
    f = w / "model.safetensors"
    base = write_model(f, 0)
    (w / "config.json").write_text("{}")
    with Registry.init(tmp_path / "reg") as reg:
        start_sha256([p for _, p in collect_files(w)])
        v1 = reg.commit(w, model="m")
        start_sha256([f])
        write_model(f, 1, base=base)  # a fine-tune written over it after the early hash
        v2 = reg.commit(w, model="m")
        digests = {e.path: e.sha256 for e in reg.manifest(f"m@v{v2.number}").files}
        assert digests["model.safetensors"] == sha(f)
        assert digests["config.json"] == sha(w / "config.json")
        reg.checkout(f"m@v{v2.number}", tmp_path / "out")
        assert (tmp_path / "out" / "model.safetensors").read_bytes() == f.read_bytes()
        assert v1.id != v2.id


def test_collect_files_refuses_what_it_cannot_commit(tmp_path: Path) -> None:
    with pytest.raises(PathNotFound):
        collect_files(tmp_path / "nope")
    (tmp_path / "only" / ".git").mkdir(parents=True)
    (tmp_path / "only" / ".git" / "HEAD").write_text("x")
    with pytest.raises(UsageError):
        collect_files(tmp_path / "only")


def test_links_to_files_and_folders_are_followed_and_stored_as_their_targets(
        tmp_path: Path) -> None:
    """As a Hugging Face cache snapshot: links into a blobs folder outside, a linked
    sub-folder too; what a commit skips is named."""
    blobs = tmp_path / "blobs"
    (blobs / "tok").mkdir(parents=True)
    (blobs / "w").write_bytes(b"weights")
    (blobs / "tok" / "vocab.txt").write_text("a b")
    snap = tmp_path / "snap"
    (snap / ".git").mkdir(parents=True)
    (snap / "__pycache__").mkdir()
    (snap / ".DS_Store").write_text("x")
    (snap / "model.bin").symlink_to(blobs / "w")
    (snap / "tokenizer").symlink_to(blobs / "tok", target_is_directory=True)
    skipped: list[str] = []
    files = collect_files(snap, skipped=skipped)
    assert [rel for rel, _ in files] == ["model.bin", "tokenizer/vocab.txt"]
    assert skipped == [".DS_Store", ".git/", "__pycache__/"]
    with Registry.init(tmp_path / "repo") as reg:
        reg.commit(snap, model="m")
        reg.checkout("m", tmp_path / "out")
    out = tmp_path / "out"
    assert not (out / "tokenizer").is_symlink() and not (out / "model.bin").is_symlink()
    assert (out / "tokenizer" / "vocab.txt").read_text() == "a b"
    assert (out / "model.bin").read_bytes() == b"weights"


def test_a_link_to_a_folder_that_holds_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    (tmp_path / "m" / "sub" / "up").symlink_to(tmp_path / "m", target_is_directory=True)
    with pytest.raises(UsageError, match="a folder that holds it") as info:
        collect_files(tmp_path / "m")
    assert "up" in str(info.value) and "remove the link" in str(info.value)


def test_a_claim_does_not_wait_and_is_handed_out_once(tmp_path: Path) -> None:
    """The commit claims the hash before encoding and reads its digest after."""
    f = tmp_path / "model.bin"
    f.write_bytes(os.urandom(2 << 20))
    start_sha256([f])
    fut = claim(f)
    assert fut is not None and claim(f) is None
    assert digest_of(fut, f.stat()) == sha(f)
    assert claim(tmp_path / "never-started.bin") is None
