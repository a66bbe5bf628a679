"""huggingface_hub and transformers read versions from a real modelvc server."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL, REPO, Hub

SHA = re.compile(r"^[0-9a-f]{40}$")
FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


def _revisions(hub: Hub) -> list[tuple[str, int]]:
    """Every kind of revision a Hub client may send, and the version it names."""
    return [("main", 2), ("exp", 3), ("production", 1), ("staging", 2), ("gold", 3),
            ("v1", 1), (hub.ids[2][:12], 2), (hub.sha(1), 1), (hub.sha(3), 3)]


def test_hf_hub_download_every_kind_of_revision(hub: Hub, hf_env: Path) -> None:
    from huggingface_hub import hf_hub_download

    for rev, number in _revisions(hub):
        for name in ("config.json", "model.safetensors"):
            path = hf_hub_download(REPO, name, revision=rev)
            assert Path(path).read_bytes() == (hub.folders[number] / name).read_bytes(), rev
            # cached under the commit id we announced (the first 40 hex of the version id)
            assert f"/snapshots/{hub.sha(number)}/" in path
    sub = hf_hub_download(REPO, "extra/notes.txt", revision="gold")
    assert Path(sub).read_text() == "trained on the exp branch\n"


@pytest.mark.parametrize("which", [0, 2, 4, 5, 6, 7])
def test_snapshot_download(hub: Hub, hf_env: Path, tmp_path: Path, which: int) -> None:
    from huggingface_hub import snapshot_download

    rev, number = _revisions(hub)[which]
    cached = Path(snapshot_download(REPO, revision=rev))
    assert cached.name == hub.sha(number)
    assert _files(cached) == _files(hub.folders[number])
    local = Path(snapshot_download(REPO, revision=rev, local_dir=tmp_path / "out"))
    got = {k: v for k, v in _files(local).items() if not k.startswith(".cache/")}
    assert got == _files(hub.folders[number])


def test_from_pretrained_production_is_bit_identical(hub: Hub, hf_env: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(REPO, revision="production")
    committed = load_file(str(hub.folders[1] / "model.safetensors"))
    state = model.state_dict()
    assert committed
    for name, tensor in committed.items():
        assert torch.equal(state[name], tensor), name
    other = load_file(str(hub.folders[2] / "model.safetensors"))
    assert any(not torch.equal(state[k], other[k]) for k in committed)
    tok = AutoTokenizer.from_pretrained(REPO, revision="production")
    assert tok("hello world")["input_ids"] == [2, 5, 6, 3]
    out = model(**tok("hello world", return_tensors="pt"))
    assert out.last_hidden_state.shape == (1, 4, 32)


def test_headers_real_clients_check(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.token}"}
    blob = (hub.folders[2] / "model.safetensors").read_bytes()
    with httpx.Client(base_url=hub.url, headers=auth) as c:
        for method in ("HEAD", "GET"):
            r = c.request(method, f"/{REPO}/resolve/staging/model.safetensors",
                          headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200
            assert r.headers["x-repo-commit"] == hub.sha(2)
            assert SHA.match(r.headers["x-repo-commit"])
            assert r.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
            assert int(r.headers["content-length"]) == len(blob)
            assert "content-encoding" not in r.headers
        assert r.content == blob
        r = c.get(f"/{REPO}/resolve/v2/model.safetensors", headers={"Range": "bytes=100-"})
        assert r.status_code == 206 and r.content == blob[100:]
        assert r.headers["content-range"] == f"bytes 100-{len(blob) - 1}/{len(blob)}"
        r = c.get(f"/{REPO}/resolve/v2/model.safetensors", headers={"Range": "bytes=8-15"})
        assert r.status_code == 206 and r.content == blob[8:16]
        r = c.get(f"/{REPO}/resolve/v2/model.safetensors",
                  headers={"Range": f"bytes={len(blob)}-"})
        assert r.status_code == 416


def test_not_found_codes(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.token}"}
    with httpx.Client(base_url=hub.url, headers=auth) as c:
        cases = [(f"/{REPO}/resolve/main/nope.bin", "EntryNotFound"),
                 (f"/{REPO}/resolve/no-such-branch/config.json", "RevisionNotFound"),
                 (f"/{REPO}/resolve/{'0' * 40}/config.json", "RevisionNotFound"),
                 ("/acme/nothing/resolve/main/config.json", "RepoNotFound"),
                 ("/a--b/resolve/main/config.json", "RepoNotFound"),
                 ("/api/models/acme/nothing", "RepoNotFound"),
                 (f"/api/models/{REPO}/revision/v99", "RevisionNotFound"),
                 (f"/api/models/{REPO}/tree/main/no-dir", "EntryNotFound")]
        for url, code in cases:
            for method in ("HEAD", "GET"):
                r = c.request(method, url)
                assert (r.status_code, r.headers.get("x-error-code")) == (404, code), url
        r = c.head(f"/{REPO}/resolve/main/nope.bin")
        assert r.headers["x-repo-commit"] == hub.sha(2)  # on EntryNotFound too


def test_not_found_surfaces_as_hub_errors(hub: Hub, hf_env: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="nightly")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/other", "config.json")


def test_a_token_is_needed(hub: Hub) -> None:
    r = httpx.head(f"{hub.url}/{REPO}/resolve/main/config.json")
    assert r.status_code == 401
    r = httpx.head(f"{hub.url}/{REPO}/resolve/main/config.json",
                   headers={"Authorization": "Bearer mvc_not-a-token"})
    assert r.status_code == 401


def test_model_info_and_tree(hub: Hub, hf_env: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi()
    info = api.model_info(REPO)
    assert info.id == REPO and info.sha == hub.sha(2)
    assert {s.rfilename for s in info.siblings or []} == set(_files(hub.folders[2]))
    assert api.model_info(REPO, revision="gold").sha == hub.sha(3)
    assert api.list_repo_files(REPO, revision="exp") == sorted(_files(hub.folders[3]))
    top = list(api.list_repo_tree(REPO, revision="exp"))
    assert {e.path for e in top if isinstance(e, RepoFolder)} == {"extra"}
    assert {e.path for e in top if isinstance(e, RepoFile)} >= FILES
    inner = list(api.list_repo_tree(REPO, path_in_repo="extra", revision="exp"))
    assert [(e.path, isinstance(e, RepoFile) and e.size) for e in inner] == [
        ("extra/notes.txt", 26)]
    deep = {e.path: e for e in api.list_repo_tree(REPO, revision=hub.sha(3), recursive=True)}
    blob = (hub.folders[3] / "model.safetensors").read_bytes()
    entry = deep["model.safetensors"]
    assert isinstance(entry, RepoFile) and entry.size == len(blob)
    assert MODEL  # repo ids ORG/NAME are the model ORG--NAME (docs/huggingface.md)


def test_main_of_a_model_without_a_main_branch_is_its_newest_version(
        hub: Hub, tmp_path: Path) -> None:
    """Hub clients always ask for `main`; the Registry API's bare name refuses to guess
    (it names the branches), so the Hub layer picks the newest version itself."""
    from modelvc.errors import RefNotFound
    from modelvc.registry import Registry

    (tmp_path / "config.json").write_text('{"only": "exp"}')
    with Registry.open(hub.url, token=hub.token) as reg:
        v = reg.commit(tmp_path / "config.json", model="acme--solo", branch="exp")
        with pytest.raises(RefNotFound, match="name a branch: acme--solo@exp"):
            reg.resolve("acme--solo")
    auth = {"Authorization": f"Bearer {hub.token}"}
    with httpx.Client(base_url=hub.url, headers=auth) as c:
        r = c.get("/acme/solo/resolve/main/config.json")
    assert r.status_code == 200 and r.json() == {"only": "exp"}
    assert r.headers["x-repo-commit"] == v.id[:40]
