"""The previous major version of huggingface_hub (0.x) against the same server.

Its venv is built once per machine in the test cache (the `hub0_python` fixture in
conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from .conftest import REPO, Hub, os_env_for

CLIENT = r"""
import hashlib, json, pathlib, sys
import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.utils import EntryNotFoundError, RevisionNotFoundError

repo, shas, upload = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
def digest(p): return hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
out = {"version": huggingface_hub.__version__, "files": {}, "snapshots": {}}
for rev in ("production", "staging", "v1", shas["3"], shas["2"][:12]):
    path = hf_hub_download(repo, "model.safetensors", revision=rev)
    out["files"][rev] = [digest(path), pathlib.Path(path).parent.name]
for rev in ("gold", "main"):
    snap = pathlib.Path(snapshot_download(repo, revision=rev))
    out["snapshots"][rev] = {p.relative_to(snap).as_posix(): digest(p)
                             for p in sorted(snap.rglob("*")) if p.is_file()}
errors = []
try:
    hf_hub_download(repo, "missing.txt")
except EntryNotFoundError:
    errors.append("entry")
try:
    hf_hub_download(repo, "config.json", revision="nightly")
except RevisionNotFoundError:
    errors.append("revision")
out["errors"] = errors
api = HfApi()
api.create_repo("acme/from-hub0", exist_ok=True)
out["commit"] = api.upload_folder(repo_id="acme/from-hub0", folder_path=upload,
                                  commit_message="from hub 0.x").oid
print(json.dumps(out))
"""


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_hub_0x_downloads_and_uploads(hub: Hub, hub0_python: Path, tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "weights.txt").write_text("not a real model\n")
    (upload / "sub").mkdir()
    (upload / "sub" / "a.json").write_text("{}\n")
    shas = {str(n): hub.sha(n) for n in (1, 2, 3)}
    run = subprocess.run([str(hub0_python), "-c", CLIENT, REPO, json.dumps(shas), str(upload)],
                         env=os_env_for(hub, tmp_path / "hf-home"), capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["version"].startswith("0.")
    want = {"production": 1, "staging": 2, "v1": 1, shas["3"]: 3, shas["2"][:12]: 2}
    for rev, number in want.items():
        assert out["files"][rev] == [_sha256(hub.folders[number] / "model.safetensors"),
                                     hub.sha(number)], rev
    for rev, number in (("gold", 3), ("main", 2)):
        folder = hub.folders[number]
        assert out["snapshots"][rev] == {p.relative_to(folder).as_posix(): _sha256(p)
                                         for p in sorted(folder.rglob("*")) if p.is_file()}
    assert out["errors"] == ["entry", "revision"]
    with hub.open() as reg:
        v = reg.resolve("acme--from-hub0@main")
        assert out["commit"] == v.id[:40]
        assert {f.path for f in reg.manifest("acme--from-hub0@main").files} == {
            "weights.txt", "sub/a.json"}
