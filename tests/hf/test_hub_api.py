"""Every Hub API call modelvc answers, by the real huggingface_hub at both ends of the
supported range (pyproject [tool.modelvc.supported-clients]): the newest major in this
venv, the oldest in .venv-hf0; and what a raw request sees of the routes it lacks."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Hub, os_env_for, supported_hub_range

CALLS = Path(__file__).with_name("hub_calls.py")


def _run(python: Path | str, hub: Hub, home: Path, repo: str) -> dict[str, Any]:
    run = subprocess.run([str(python), str(CALLS), repo, hub.reader_token],
                         env=os_env_for(hub, home), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def _check(out: dict[str, Any], hub: Hub, repo: str, major: int) -> None:
    model = repo.replace("/", "--")
    assert out["version"].startswith(f"{major}.")
    assert out["empty_info_sha"] is None and out["empty_files"] == []
    assert out["empty_download"] == "EntryNotFound"
    with hub.open() as reg:
        card = reg.resolve(f"{model}@v1")
        folder = reg.resolve(f"{model}@v2")
        files = {f.path for f in reg.manifest(f"{model}@main").files}
        assert reg.resolve(f"{model}@first").id == card.id  # HF tag -> modelvc tag
        assert reg.resolve(f"{model}@release").id == folder.id
        assert reg.resolve(f"{model}@dev").id == folder.id  # HF branch -> modelvc branch
        kinds = {r.name: r.kind for r in reg.refs(model) if r.version_id}
    assert kinds == {"main": "branch", "dev": "branch", "first": "tag", "release": "tag"}
    assert out["readme_commit"] == card.id[:40] and out["folder_commit"] == folder.id[:40]
    assert files == {"README.md", "config.json", "sub/w.txt"}
    assert out["bad_yaml"]["status"] == 400 and "Invalid metadata" in out["bad_yaml"]["text"]
    sha1, sha2 = card.id[:40], folder.id[:40]
    assert out["branches"] == [["dev", "refs/heads/dev", sha2],
                               ["from-card", "refs/heads/from-card", sha1],
                               ["main", "refs/heads/main", sha2]]
    assert out["tags"] == [["first", "refs/tags/first", sha1],
                           ["release", "refs/tags/release", sha2]]
    assert out["dup_branch"]["status"] == 409 and "already exists" in out["dup_branch"]["text"]
    assert out["dup_tag"]["status"] == 409 and "already exists" in out["dup_tag"]["text"]
    assert out["branches_after_delete"] == ["dev", "main"]
    assert out["delete_tag"]["status"] == 409 and "immutable" in out["delete_tag"]["text"]
    assert out["delete_main"]["status"] == 403
    assert "cannot be deleted" in out["delete_main"]["text"]
    assert out["file_at_tag"].startswith("---\nlicense: apache-2.0")
    assert [(c["id"], c["title"], c["message"], c["authors"]) for c in out["commits"]] == [
        (sha2, "folder", "with a sub folder", ["alice"]), (sha1, "card", "", ["alice"])]
    assert out["commits_at_tag"] == [sha1]
    assert out["whoami"] == ["alice", "write"]
    assert out["list_search"] == [repo]
    assert repo in out["list_author"] and "acme/tiny-bert" in out["list_author"]
    assert out["list_author"][0] == repo  # newest first
    assert set(out["list_created"]) == set(out["list_author"])
    assert out["paths"] == [["RepoFile", "README.md"], ["RepoFile", "sub/w.txt"],
                            ["RepoFolder", "sub"]]
    assert out["security"] == {"scansDone": False, "filesWithIssues": []}
    assert out["delete_repo"]["status"] == 403  # alice is no admin
    assert "alice needs the admin role" in out["delete_repo"]["text"]
    for call in ("ro_branch", "ro_upload"):  # the server's reason reaches the user
        assert out[call]["status"] == 403, out[call]
        assert "carol needs the writer role" in out[call]["text"], out[call]
        assert "None." not in out[call]["text"]
    assert out["ro_whoami"] == "read"
    assert out["bad_token"]["status"] == 401
    assert "not known to this registry" in out["bad_token"]["text"]


def test_newest_hub_major_makes_every_call(hub: Hub, tmp_path: Path) -> None:
    _, _, newest = supported_hub_range()
    repo = f"acme/calls-{uuid.uuid4().hex[:8]}"
    _check(_run(sys.executable, hub, tmp_path / "home", repo), hub, repo, newest)


def test_oldest_hub_major_makes_every_call(hub: Hub, hub0_python: Path,
                                           tmp_path: Path) -> None:
    _, oldest, _ = supported_hub_range()
    repo = f"acme/calls-{uuid.uuid4().hex[:8]}"
    _check(_run(hub0_python, hub, tmp_path / "home", repo), hub, repo, oldest)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/models/acme/tiny-bert/nope"),
    ("GET", "/api/models/acme/tiny-bert/discussions"),
    ("POST", "/api/models/acme/tiny-bert/settings"),
    ("GET", "/api/models/acme/tiny-bert/refs/extra"),
])
def test_unknown_routes_of_an_existing_repo_do_not_say_repo_not_found(
        hub: Hub, method: str, path: str) -> None:
    r = httpx.request(method, hub.url + path, headers={"Authorization":
                                                       f"Bearer {hub.token}"})
    assert r.status_code == 404
    assert "x-error-code" not in r.headers
    assert "no such endpoint" in r.headers["x-error-message"]


def test_401_and_403_carry_the_message(hub: Hub) -> None:
    r = httpx.get(f"{hub.url}/api/models/acme/tiny-bert")
    assert r.status_code == 401  # no token, no anonymous reads: as for a private repo
    assert r.headers["x-error-code"] == "RepoNotFound"
    assert "needs an API token" in r.headers["x-error-message"]
    r = httpx.post(f"{hub.url}/api/models/acme/tiny-bert/branch/x",
                   headers={"Authorization": f"Bearer {hub.reader_token}"}, json={})
    assert r.status_code == 403 and "x-error-code" not in r.headers
    assert "carol needs the writer role" in r.headers["x-error-message"]


def test_delete_repo_keeps_history_even_for_an_admin(hub: Hub, hf_env: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    from tests.services.server import grant_token

    token = grant_token(hub.registry, "dora", "admin", scopes=["admin:*"])
    api = HfApi(token=token)
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_repo("acme/tiny-bert")
    assert err.value.response.status_code == 403
    assert "history is kept" in str(err.value) and "modelvc delete" in str(err.value)
    api.delete_repo("acme/never-was", missing_ok=True)
    with hub.open() as reg:
        assert len(reg.versions("acme--tiny-bert")) >= 3


def test_transformers_says_what_a_401_means(hub: Hub, hf_env: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, or a refused one: transformers asks for a token with permission, never
    calls it "a connection error"."""
    from transformers import AutoConfig

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(OSError) as err:
        AutoConfig.from_pretrained("acme/tiny-bert")
    text = str(err.value)
    assert "connection error" not in text and "token" in text
    monkeypatch.setenv("HF_TOKEN", "mvc_not-a-token")
    with pytest.raises(OSError) as err:
        AutoConfig.from_pretrained("acme/tiny-bert")
    text = str(err.value)
    assert "connection error" not in text and "token" in text
