"""How refs behave for a user, on every backend: where a new branch starts, what a bare
model name means, what a channel move to its own version records, which names a tag may
take, how tags go, what a refused operation tells the caller to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.errors import Conflict, InvalidName, RefMoved, RefNotFound, UsageError
from tests.conftest import write_model


def _commit(api: Any, tmp: Path, model: str, seed: int, **kw: Any) -> Any:
    path = tmp / f"w{seed}.safetensors"
    if not path.exists():
        write_model(path, seed)
    return api.commit(path, model=model, **kw)


@pytest.mark.verbs("commit", "commit_files", "log")
def test_a_new_branch_starts_at_the_main_head_unless_a_root_is_asked_for(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1, message="one")
    v2 = _commit(api, tmp_path, model, 2, branch="dev", message="two")
    assert v2.parents == [v1.id]  # a fine-tune keeps its link to its base
    assert [v.id for v in api.log(f"{model}@dev")] == [v2.id, v1.id]
    v3 = _commit(api, tmp_path, model, 3, branch="scratch", root=True)
    assert v3.parents == []
    v4 = api.commit_files({"x.bin": b"abc"}, model=model, branch="mem")
    assert v4.parents == [v1.id]
    with pytest.raises(UsageError, match="a root version starts a new branch"):
        _commit(api, tmp_path, model, 4, branch="dev", root=True)
    with pytest.raises(UsageError, match="not both"):
        _commit(api, tmp_path, model, 4, branch="other", root=True, parent=f"{model}@v1")
    # An explicit parent still decides where a new branch starts.
    v5 = _commit(api, tmp_path, model, 5, branch="from-dev", parent=f"{model}@dev")
    assert v5.parents == [v2.id]
    with pytest.raises(RefMoved):  # and on an existing branch it must be the head
        _commit(api, tmp_path, model, 6, branch="dev", parent=f"{model}@v1")


@pytest.mark.verbs("run")
def test_a_training_run_links_to_main_only_when_its_parent_says_so(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1)
    state = {"w": np.arange(6, dtype=np.float32)}
    with api.run(model=model, branch="tune", parent=f"{model}@main", isolate=False) as run:
        tuned = run.commit(state, step=1)
        later = run.commit(state, step=2)
    with api.run(model=model, branch="fresh", isolate=False) as run:
        fresh = run.commit(state, step=1)
    with api.run(model=model, branch="fresh", isolate=False) as run:  # resumed
        after = run.commit(state, step=2)
    assert tuned.parents == [v1.id] and later.parents == [tuned.id]
    assert fresh.parents == [] and after.parents == [fresh.id]


@pytest.mark.verbs("commit")
def test_a_model_without_a_main_branch_starts_new_branches_as_roots(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1, branch="exp")
    v2 = _commit(api, tmp_path, model, 2, branch="exp2")
    assert v1.parents == [] and v2.parents == []


@pytest.mark.verbs("commit", "delete_ref", "resolve", "refs")
def test_the_main_branch_stays_and_a_bare_name_never_guesses(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1)
    _commit(api, tmp_path, model, 2, branch="exp")
    with pytest.raises(Conflict, match="main branch") as err:
        api.delete_ref(model, "main")
    assert f"modelvc branch delete {model} main -r REASON" in str(err.value.hint)
    assert api.resolve(model).id == v1.id
    assert {r.name for r in api.refs(model, kind="branch")} == {"main", "exp"}
    # with a reason it goes (a main line whose versions must be deleted), audited
    api.delete_ref(model, "main", reason="its versions hold a leaked file")
    with pytest.raises(RefNotFound, match=f"{model} has no main branch"):
        api.resolve(model)
    # A model whose versions are all on other branches: bare MODEL is no guess.
    other = model + "-x"
    _commit(api, tmp_path, other, 1, branch="exp")
    with pytest.raises(RefNotFound, match=f"{other} has no main branch; name a branch: "
                                          f"{other}@exp"):
        api.resolve(other)
    assert api.resolve(f"{other}@exp").number == 1


@pytest.mark.verbs("log")
def test_log_puts_every_version_above_its_parents_across_a_fork(
        api: Any, model: str, tmp_path: Path) -> None:
    a1 = _commit(api, tmp_path, model, 1)
    a2 = _commit(api, tmp_path, model, 2)
    a3 = _commit(api, tmp_path, model, 3)  # newer than the fork's origin, not its ancestor
    fork = model + "-fork"
    f1 = _commit(api, tmp_path, fork, 4, parent=f"{model}@v2")
    f2 = _commit(api, tmp_path, fork, 5)
    assert [v.id for v in api.log(fork)] == [f2.id, f1.id, a2.id, a1.id]
    assert [v.id for v in api.log(model)] == [a3.id, a2.id, a1.id]


@pytest.mark.verbs("promote", "rollback", "resolve", "delete_ref", "create_branch")
def test_a_misspelt_ref_gets_the_name_meant_and_create_only_when_nothing_is_close(
        api: Any, model: str, tmp_path: Path) -> None:
    _commit(api, tmp_path, model, 1)
    api.promote(f"{model}@v1", "production", create=True)
    api.create_branch(model, "dev")
    with pytest.raises(RefNotFound) as err:
        api.promote(f"{model}@v1", "prodution")
    assert err.value.hint == "did you mean production?"
    with pytest.raises(RefNotFound) as err:
        api.rollback(model, "prodution")
    assert err.value.hint == "did you mean production?"
    with pytest.raises(RefNotFound) as err:
        api.promote(f"{model}@v1", "canary")
    assert err.value.hint == "new channel? add --create (Python: create=True)"
    with pytest.raises(RefNotFound) as err:
        api.resolve(f"{model}@dve")
    assert err.value.hint == f"did you mean {model}@dev?"
    with pytest.raises(RefNotFound) as err:
        api.delete_ref(model, "dve")
    assert err.value.hint == f"did you mean {model}@dev?"
    assert {r.name for r in api.refs(model)} == {"main", "dev", "production"}


@pytest.mark.verbs("commit", "tag", "create_branch", "promote", "resolve")
def test_a_ref_named_like_a_version_id_is_refused_at_creation(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1)
    prefix = v1.id[:6]  # as copied from `modelvc log`
    for make in (lambda n: api.tag(f"{model}@v1", n),
                 lambda n: api.create_branch(model, n),
                 lambda n: api.promote(f"{model}@v1", n, create=True),
                 lambda n: _commit(api, tmp_path, model, 2, tags=[n]),
                 lambda n: _commit(api, tmp_path, model, 2, branch=n)):
        with pytest.raises(InvalidName, match=f"a version id of {model} starts with it"
                           ) as err:
            make(prefix)
        assert err.value.hint == f"add a word, e.g. build-{prefix}"
        with pytest.raises(InvalidName, match="look like a version id prefix"):
            make("4b68a9c")  # 7+ hex: refused whatever the ids
    api.tag(f"{model}@v1", f"build-{prefix}")
    api.create_branch(model, "bf16")  # short hex no id starts with: a fine name
    assert api.resolve(f"{model}@build-{prefix}").id == v1.id
    assert [v.number for v in api.versions(model)] == [1]
    assert {r.name for r in api.refs(model)} == {"main", "bf16", f"build-{prefix}"}


@pytest.mark.verbs("rollback", "tag")
def test_rollback_to_a_bare_selector_means_one_of_the_models_versions(
        api: Any, model: str, tmp_path: Path) -> None:
    v1 = _commit(api, tmp_path, model, 1)
    v2 = _commit(api, tmp_path, model, 2)
    _commit(api, tmp_path, model, 3)
    api.promote(f"{model}@v3", "production", create=True)
    api.tag(f"{model}@v1", "gold")
    assert api.rollback(model, "production", to="v2").version_id == v2.id
    assert api.rollback(model, "production", to="gold").version_id == v1.id
    assert api.rollback(model, "production", to=v2.id[:10]).version_id == v2.id
    assert api.rollback(model, "production", to=f"{model}@v1").version_id == v1.id
    with pytest.raises(RefNotFound, match="v9"):
        api.rollback(model, "production", to="v9")


@pytest.mark.verbs("tag", "delete_ref", "delete", "audit", "promote")
def test_a_tagged_version_can_be_deleted_once_its_tags_are_deleted_with_a_reason(
        api: Any, model: str, tmp_path: Path) -> None:
    _commit(api, tmp_path, model, 1)
    v2 = _commit(api, tmp_path, model, 2)
    api.tag(f"{model}@v1", "base")
    api.promote(f"{model}@v1", "staging", create=True)
    with pytest.raises(Conflict, match="still the target of tag base, channel staging") as err:
        api.delete(f"{model}@v1", reason="bad data")
    assert err.value.hint == (f"first `modelvc tag delete {model} base -r REASON`; "
                              f"`modelvc rollback {model} staging` (or promote another "
                              "version --to staging)")
    api.promote(f"{model}@v2", "staging")
    with pytest.raises(UsageError, match="needs a reason"):
        api.delete_ref(model, "base")
    api.delete_ref(model, "base", reason="free v1")
    api.delete(f"{model}@v1", reason="bad data")
    assert [v.id for v in api.versions(model) if v.deleted_at is None] == [v2.id]
    gone = [e for e in api.audit(model=model, action="delete") if e.target == f"{model}@base"]
    assert len(gone) == 1 and gone[0].reason == "free v1"
    with pytest.raises(Conflict, match=r"still the target of .*branch main") as err:
        api.delete(f"{model}@v2", reason="x")
    assert f"commit a newer version to {model}'s main branch" in str(err.value.hint)
    assert "tag delete" not in str(err.value.hint)  # only what blocks, nothing else
