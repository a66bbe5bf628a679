"""upload_folder / upload_file / delete_file with regular (non-LFS) files make versions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import Hub, tiny_bert


def test_upload_folder_creates_a_version(hub: Hub, hf_env: Path, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi()
    url = api.create_repo("acme/uploaded", exist_ok=True)
    assert url.repo_id == "acme/uploaded"
    api.create_repo("acme/uploaded", exist_ok=True)  # 409 is what exist_ok expects
    folder = tmp_path / "bert"
    tiny_bert(folder, seed=7)
    info = api.upload_folder(repo_id="acme/uploaded", folder_path=folder,
                             commit_message="first upload")
    with hub.open() as reg:
        v1 = reg.resolve("acme--uploaded@main")
        assert info.oid == v1.id[:40] and v1.number == 1 and v1.message == "first upload"
        assert v1.author == "alice"
        assert {f.path for f in reg.manifest("acme--uploaded@v1").files} == {
            p.name for p in folder.iterdir()}
    got = Path(snapshot_download("acme/uploaded", cache_dir=tmp_path / "c"))
    for p in folder.iterdir():
        assert (got / p.name).read_bytes() == p.read_bytes()

    # A second commit on top: one file added, one replaced, one deleted.
    api.upload_file(path_or_fileobj=b"# tiny\n", path_in_repo="docs/README.md",
                    repo_id="acme/uploaded", commit_message="docs")
    api.delete_file("tokenizer_config.json", repo_id="acme/uploaded")
    with hub.open() as reg:
        head = reg.resolve("acme--uploaded@main")
        assert head.number == 3 and head.parents == [reg.resolve("acme--uploaded@v2").id]
        paths = {f.path for f in reg.manifest("acme--uploaded@main").files}
    assert "docs/README.md" in paths and "tokenizer_config.json" not in paths
    readme = hf_hub_download("acme/uploaded", "docs/README.md", cache_dir=tmp_path / "d")
    assert Path(readme).read_bytes() == b"# tiny\n"
    api.upload_file(path_or_fileobj="héllo".encode(), path_in_repo="notes/naïve.txt",
                    repo_id="acme/uploaded")
    odd = hf_hub_download("acme/uploaded", "notes/naïve.txt", cache_dir=tmp_path / "d")
    assert Path(odd).read_text() == "héllo"

    from transformers import AutoModel

    model = AutoModel.from_pretrained("acme/uploaded", revision="v1",
                                      cache_dir=tmp_path / "e")
    assert model.config.hidden_size == 32


def test_upload_to_a_channel_or_a_stale_parent_is_refused(hub: Hub, hf_env: Path,
                                                           tmp_path: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    with pytest.raises(HfHubHTTPError) as bad:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt",
                        repo_id="acme/tiny-bert", revision="production")
    assert bad.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as stale:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt",
                        repo_id="acme/tiny-bert", revision="exp", parent_commit=hub.sha(1))
    assert stale.value.response.status_code == 412
    with hub.open() as reg:
        assert reg.resolve("acme--tiny-bert@exp").number == 3  # nothing moved


def test_writes_need_the_writer_role(hub: Hub) -> None:
    from tests.services.server import grant_token

    token = grant_token(hub.registry, "bob", "reader", scopes=["admin:*"])
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{hub.url}/api/repos/create", json={"name": "x", "organization": "bob"},
                   headers=auth)
    assert r.status_code == 403
    body = b'{"key":"header","value":{"summary":"s"}}\n'
    r = httpx.post(f"{hub.url}/api/models/acme/tiny-bert/commit/main", content=body,
                   headers={**auth, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 403
    r = httpx.head(f"{hub.url}/acme/tiny-bert/resolve/main/config.json", headers=auth)
    assert r.status_code == 200


def _io(pid: int) -> int:
    """Bytes the process read and wrote through syscalls (files and sockets alike)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def _stored(registry: Path) -> int:
    return sum(p.stat().st_size for p in (registry / ".modelvc" / "objects").rglob("*")
               if p.is_file())


def test_readme_upload_to_a_large_model_costs_kilobytes(hub: Hub, hf_env: Path,
                                                        tmp_path: Path) -> None:
    """Neither the parent's weights nor a checkout of them are read or written again:
    the new version reuses the parent's objects and stores only the README."""
    import numpy as np
    from huggingface_hub import HfApi, hf_hub_download
    from safetensors.numpy import save_file

    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    save_file({f"layer{i}.weight": rng.standard_normal(1 << 20, dtype=np.float32)
               for i in range(16)}, str(folder / "model.safetensors"))  # 64 MiB
    (folder / "config.json").write_text('{"hidden_size": 1024}\n')
    size = (folder / "model.safetensors").stat().st_size
    with hub.open() as reg:
        parent = reg.commit(folder, model="acme--big", message="weights", author="tester",
                            cwd=tmp_path)
    api = HfApi()
    # The server's first upload imports code; only the second is measured.
    api.upload_file(path_or_fileobj=b"warm-up\n", path_in_repo="NOTES.md",
                    repo_id="acme/big")
    readme = b"---\nlicense: apache-2.0\n---\n" + b"# big\n\nA model of 64 MiB.\n" * 40
    stored, moved = _stored(hub.registry), _io(hub.pid)
    info = api.upload_file(path_or_fileobj=readme, path_in_repo="README.md",
                           repo_id="acme/big", commit_message="readme")
    moved = _io(hub.pid) - moved
    stored = _stored(hub.registry) - stored
    assert moved < 2 << 20, f"the server read and wrote {moved} bytes for a README"
    assert stored < 64 << 10, f"{stored} bytes stored for a README"
    with hub.open() as reg:
        v = reg.resolve("acme--big@main")
        assert info.oid == v.id[:40] and v.message == "readme" and v.number == parent.number + 2
        assert v.stored_size < 16 << 10
        m, pm = reg.manifest("acme--big@main"), reg.manifest(f"acme--big@{parent.id}")
        assert m.file("model.safetensors") == pm.file("model.safetensors")  # reused as is
        assert {f.path for f in m.files} == {"model.safetensors", "config.json", "NOTES.md",
                                             "README.md"}
    got = hf_hub_download("acme/big", "README.md", cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == readme
    with pytest.raises(ValueError, match="not valid YAML"):  # checked before the upload
        api.upload_file(path_or_fileobj=b"---\nlicense: [x\n---\n", path_in_repo="README.md",
                        repo_id="acme/big")
    assert size > 64 << 20


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no {key}")


LARGE = 40  # tensors of 4 MiB: a 160 MiB safetensors file, 213 MiB of base64 on one line


def _weights(n: int, seed: int) -> bytes:
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save({f"layer{i}.weight": rng.standard_normal(1 << 20, dtype=np.float32)
                 for i in range(n)})


def test_a_large_commit_streams_through_the_server(hub: Hub, hf_env: Path) -> None:
    """A commit body is read as it arrives (server/hf_commit.py): its file is decoded
    into a temp file and committed from there. The server's peak RSS (its own, from
    /proc, not a timing) grows by what committing the file costs (its block cache and
    buffers: 130-190 MiB for 64-320 MiB files), not by the body: read whole, this one
    grew it by ~1 GiB (the base64 line parsed, then decoded). Reading alone is
    tests/campaign/test_memory.py's HF case."""
    import hashlib

    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    api.create_repo("acme/large")
    api.upload_file(path_or_fileobj=b"warm-up", path_in_repo="NOTES.md",
                    repo_id="acme/large")  # imports, unmeasured
    data = _weights(LARGE, 2)
    Path(f"/proc/{hub.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status(hub.pid, "VmRSS")
    info = api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors",
                           repo_id="acme/large", commit_message="large")
    peak = _status(hub.pid, "VmHWM") - before
    print(f"a {len(data) >> 20} MiB file through upload_file: server peak RSS "
          f"+{peak >> 20} MiB over {before >> 20} MiB")
    assert peak < len(data) + (64 << 20), f"the server's peak RSS grew {peak >> 20} MiB"
    got = hf_hub_download("acme/large", "model.safetensors", revision=info.oid)
    assert hashlib.sha256(Path(got).read_bytes()).digest() == hashlib.sha256(data).digest()
    with hub.open() as reg:
        assert reg.resolve("acme--large@main").message == "large"
