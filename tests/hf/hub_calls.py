"""Every Hub API call modelvc answers, made by whichever huggingface_hub runs this
script (the newest major in the test venv, the oldest in .venv-hf0): run as
`python hub_calls.py REPO_ID READER_TOKEN`, with HF_ENDPOINT/HF_TOKEN set; prints one
JSON object of what each call returned, for tests/hf/test_hub_api.py to check."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError


def refused(call: Any) -> dict[str, Any]:
    """The status and the message the client shows for a refused call."""
    try:
        call()
    except HfHubHTTPError as exc:
        return {"status": exc.response.status_code, "type": type(exc).__name__,
                "text": str(exc)}
    except ValueError as exc:  # what the client raises on a refused README.md metadata
        cause = exc.__cause__
        return {"status": getattr(getattr(cause, "response", None), "status_code", None),
                "type": type(exc).__name__, "text": str(exc)}
    return {"status": None}


def main() -> None:
    repo, reader_token = sys.argv[1], sys.argv[2]
    api = HfApi()
    out: dict[str, Any] = {"version": huggingface_hub.__version__}
    api.create_repo(repo)
    # a fresh repo: no files, EntryNotFound as the Hub answers
    out["empty_info_sha"] = api.model_info(repo).sha
    try:
        hf_hub_download(repo, "README.md", cache_dir=tempfile.mkdtemp())
        out["empty_download"] = "found"
    except EntryNotFoundError:
        out["empty_download"] = "EntryNotFound"
    out["empty_files"] = api.list_repo_files(repo)
    # a README.md with a metadata block goes through /api/validate-yaml
    card = b"---\nlicense: apache-2.0\ntags: [test]\n---\n# A card\n"
    out["readme_commit"] = api.upload_file(path_or_fileobj=card, path_in_repo="README.md",
                                           repo_id=repo, commit_message="card").oid
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "README.md").write_text("# plain card, no metadata\n")
        (folder / "config.json").write_text('{"a": 1}\n')
        (folder / "sub").mkdir()
        (folder / "sub" / "w.txt").write_text("w\n")
        out["folder_commit"] = api.upload_folder(
            repo_id=repo, folder_path=folder, commit_message="folder",
            commit_description="with a sub folder").oid
    out["bad_yaml"] = refused(lambda: api.upload_file(
        path_or_fileobj=b"---\nlicense: [unclosed\n---\n", path_in_repo="README.md",
        repo_id=repo))
    # refs, branches, tags
    api.create_branch(repo, branch="dev")
    api.create_branch(repo, branch="dev", exist_ok=True)
    api.create_branch(repo, branch="from-card", revision=out["readme_commit"])
    api.create_tag(repo, tag="first", revision=out["readme_commit"])
    api.create_tag(repo, tag="release", tag_message="the folder")
    refs = api.list_repo_refs(repo)
    out["branches"] = sorted((b.name, b.ref, b.target_commit) for b in refs.branches)
    out["tags"] = sorted((t.name, t.ref, t.target_commit) for t in refs.tags)
    out["dup_branch"] = refused(lambda: api.create_branch(repo, branch="dev"))
    out["dup_tag"] = refused(lambda: api.create_tag(repo, tag="first"))
    api.delete_branch(repo, branch="from-card")
    out["branches_after_delete"] = sorted(b.name for b in api.list_repo_refs(repo).branches)
    out["delete_tag"] = refused(lambda: api.delete_tag(repo, tag="first"))
    out["delete_main"] = refused(lambda: api.delete_branch(repo, branch="main"))
    out["file_at_tag"] = Path(hf_hub_download(repo, "README.md", revision="first",
                                              cache_dir=tempfile.mkdtemp())).read_bytes(
                                                  ).decode()
    # history
    out["commits"] = [{"id": c.commit_id, "title": c.title, "message": c.message,
                       "authors": c.authors, "date": c.created_at.isoformat()}
                      for c in api.list_repo_commits(repo)]
    out["commits_at_tag"] = [c.commit_id for c in api.list_repo_commits(repo,
                                                                        revision="first")]
    # account, listing, paths, security
    me = api.whoami()
    out["whoami"] = [me["name"], me["auth"]["accessToken"]["role"]]
    org = repo.split("/")[0]
    out["list_search"] = [m.id for m in api.list_models(search=repo.split("/")[1])]
    out["list_author"] = [m.id for m in api.list_models(author=org, sort="last_modified",
                                                        limit=50)]
    out["list_created"] = [m.id for m in api.list_models(author=org, sort="created_at")]
    paths = api.get_paths_info(repo, ["README.md", "sub", "missing.txt", "sub/w.txt"])
    out["paths"] = sorted((type(p).__name__, p.path) for p in paths)
    info = api.model_info(repo, securityStatus=True)
    out["security"] = info.security_repo_status
    out["delete_repo"] = refused(lambda: api.delete_repo(repo))
    api.delete_repo(f"{org}/does-not-exist", missing_ok=True)
    # a read-only token: 403 with the server's reason
    ro = HfApi(token=reader_token)
    out["ro_branch"] = refused(lambda: ro.create_branch(repo, branch="nope"))
    out["ro_upload"] = refused(lambda: ro.upload_file(path_or_fileobj=b"x",
                                                      path_in_repo="x.txt", repo_id=repo))
    out["ro_whoami"] = ro.whoami()["auth"]["accessToken"]["role"]
    out["bad_token"] = refused(lambda: HfApi(token="mvc_not-a-token").model_info(repo))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
