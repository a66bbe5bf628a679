"""The real MLflow client (mlflow-skinny) against a real `modelvc server`: the Model
Registry calls, aliases as channels (gated, role-checked), the artifact proxy, and
`log_model` -> `pyfunc.load_model` by alias."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import write_model
from tests.mlflow.conftest import Server
from tests.services.lazy import lazy

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException

    import mlflow
else:
    mlflow = lazy("mlflow")  # imported by the tests, not at collection
errors = lazy("mlflow.exceptions")

POLICY = """
version: 1
models:
  gated:
    channels:
      production:
        gates:
          - metric: "acc >= 0.5"
"""


def _client(server: Server, token: str | None = None) -> Any:
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = token or server.writer
    return mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fit(seed: int) -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(seed)
    x = rng.rand(60, 4)
    return LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 1).astype(int)), x


def _error(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


# The requirements given, as a pinned CI job gives them: left out, MLflow infers them by
# importing the model in a subprocess (~4.5 s of CPU). The first test keeps MLflow's
# default path.
REQS = ["scikit-learn"]


def test_log_model_then_load_by_alias_predicts_the_same(as_user: Server,
                                                         infer_requirements: bool = True
                                                         ) -> None:
    model, x = _fit(0)
    reqs = {} if infer_requirements else {"pip_requirements": REQS}
    with mlflow.start_run() as run:
        mlflow.log_params({"C": "1.0", "solver": "lbfgs"})
        mlflow.log_metrics({"acc": 0.93, "loss": 0.2})
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="iris",
                                        **reqs)
    c = _client(as_user)
    c.set_registered_model_alias("iris", "champion", "1")
    # Registered, the files are the registry's alone: no staged copy is left behind, and
    # the logged model's own URI is served from the version.
    staged = as_user.registry / ".modelvc" / "mlflow" / "artifacts"
    assert not [p for p in staged.rglob("*") if p.is_file() and info.model_id in str(p)]
    assert (mlflow.pyfunc.load_model(info.model_uri).predict(x) == model.predict(x)).all()
    loaded = mlflow.pyfunc.load_model("models:/iris@champion")
    assert (loaded.predict(x) == model.predict(x)).all()
    by_version = mlflow.pyfunc.load_model("models:/iris/1")
    assert (by_version.predict(x) == model.predict(x)).all()
    # The run's params and metrics are the version's, recorded by the registry.
    with as_user.open() as reg:
        v = reg.resolve("iris@champion")
        assert v.params == {"C": "1.0", "solver": "lbfgs"} and v.metrics["acc"] == 0.93
        assert v.lineage["mlflow"]["run_id"] == run.info.run_id
        assert v.author == "alice"
        moves = reg.history("iris", name="champion")  # recorded as the token's subject
        assert [m.actor for m in moves] == ["alice"] and "mlflow" in moves[-1].reason
    mv = c.get_model_version_by_alias("iris", "champion")
    assert mv.version == "1" and mv.run_id == run.info.run_id and mv.aliases == ["champion"]


def test_registered_model_calls(as_user: Server) -> None:
    c = _client(as_user)
    for i in range(5):
        c.create_registered_model(f"rm-{i}", tags={"team": "a" if i % 2 else "b"},
                                  description=f"model {i}")
    with pytest.raises(errors.MlflowException) as err:
        c.create_registered_model("rm-0")
    assert _error(err) == "RESOURCE_ALREADY_EXISTS"
    got = c.get_registered_model("rm-1")
    assert got.description == "model 1" and got.tags == {"team": "a"}
    c.update_registered_model("rm-1", description="changed")
    assert c.get_registered_model("rm-1").description == "changed"
    c.set_registered_model_tag("rm-1", "stage", "dev")
    c.delete_registered_model_tag("rm-1", "team")
    assert c.get_registered_model("rm-1").tags == {"stage": "dev"}
    # Filters and paging.
    names = [m.name for m in c.search_registered_models(filter_string="name LIKE 'rm-%'")]
    assert names == [f"rm-{i}" for i in range(5)]
    assert [m.name for m in c.search_registered_models(
        filter_string="tags.team = 'b' AND name != 'rm-0'")] == ["rm-2", "rm-4"]
    page1 = c.search_registered_models(filter_string="name ILIKE 'RM-%'", max_results=2)
    page2 = c.search_registered_models(filter_string="name ILIKE 'RM-%'", max_results=2,
                                       page_token=page1.token)
    page3 = c.search_registered_models(filter_string="name ILIKE 'RM-%'", max_results=2,
                                       page_token=page2.token)
    assert [m.name for m in [*page1, *page2, *page3]] == [f"rm-{i}" for i in range(5)]
    assert not page3.token
    with pytest.raises(errors.MlflowException) as err:
        c.search_registered_models(filter_string="name LIKES 'x'")
    assert _error(err) == "INVALID_PARAMETER_VALUE"
    # Rename: a model without versions only (a version's name is in its refs and audit).
    c.rename_registered_model("rm-4", "rm-renamed")
    assert c.get_registered_model("rm-renamed").description == "model 4"
    with pytest.raises(errors.MlflowException) as err:
        c.get_registered_model("rm-4")
    assert _error(err) == "RESOURCE_DOES_NOT_EXIST"
    c.delete_registered_model("rm-3")
    assert "rm-3" not in [m.name for m in c.search_registered_models()]


def _weights_run(tmp_path: Path, base: dict[str, np.ndarray] | None, seed: int) -> tuple[
        str, dict[str, np.ndarray], Path]:
    path = tmp_path / f"w{seed}" / "model.safetensors"
    tensors = write_model(path, seed)
    if base is not None:  # a head-only fine-tune: the other tensors are the base's
        from safetensors.numpy import save_file

        tensors = {**base, "head.weight": tensors["head.weight"]}
        save_file(tensors, str(path), metadata={"format": "np"})
    with mlflow.start_run() as run:
        mlflow.log_param("seed", seed)
        mlflow.log_metric("acc", 0.8 + seed / 100, step=1)
        mlflow.log_artifact(str(path), artifact_path="weights")
    return run.info.run_id, tensors, path


def test_model_versions_stages_tags_and_artifacts(as_user: Server, tmp_path: Path) -> None:
    c = _client(as_user)
    c.create_registered_model("bert")
    files, base = [], None
    for seed in (1, 2, 3):
        run_id, tensors, path = _weights_run(tmp_path, base, seed)
        base = base or tensors
        mv = c.create_model_version("bert", f"runs:/{run_id}/weights", run_id=run_id,
                                    tags={"seed": str(seed)}, description=f"seed {seed}")
        assert mv.version == str(seed) and mv.status == "READY"
        files.append(path)
    assert c.get_model_version("bert", "2").description == "seed 2"
    c.update_model_version("bert", "2", description="better")
    c.set_model_version_tag("bert", "2", "validated", "yes")
    c.delete_model_version_tag("bert", "2", "seed")
    mv2 = c.get_model_version("bert", "2")
    assert mv2.description == "better" and mv2.tags == {"validated": "yes"}
    found = c.search_model_versions("name = 'bert' AND tags.validated = 'yes'")
    assert [m.version for m in found] == ["2"]
    paged = c.search_model_versions("name='bert'", max_results=2)
    rest = c.search_model_versions("name='bert'", max_results=2, page_token=paged.token)
    assert [m.version for m in [*paged, *rest]] == ["3", "2", "1"]
    # The artifact proxy: bit-exact, from the registry.
    uri = c.get_model_version_download_uri("bert", "3")
    assert uri == "mlflow-artifacts:/_modelvc/bert/3"
    out = Path(mlflow.artifacts.download_artifacts("models:/bert/3", dst_path=str(tmp_path
                                                                                   / "dl")))
    assert _sha(out / "model.safetensors") == _sha(files[2])
    c.set_registered_model_alias("bert", "champion", "3")
    out = Path(mlflow.artifacts.download_artifacts("models:/bert@champion",
                                                   dst_path=str(tmp_path / "alias")))
    assert _sha(out / "model.safetensors") == _sha(files[2])
    run_id = c.get_model_version("bert", "3").run_id  # the run's URI: from the version now
    out = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/weights",
                                                   dst_path=str(tmp_path / "run")))
    assert _sha(out / "model.safetensors") == _sha(files[2])
    # Stored with tensor deltas: a fine-tune costs a fraction of its size.
    with as_user.open() as reg:
        v1, v3 = reg.resolve("bert@v1"), reg.resolve("bert@v3")
        assert v3.stored_size < v3.raw_size / 10 and v1.stored_size > v1.raw_size / 2
    # Stages are the channels staging and production.
    c.transition_model_version_stage("bert", "1", "Staging")
    c.transition_model_version_stage("bert", "2", "Production")
    assert c.get_model_version("bert", "2").current_stage == "Production"
    assert [m.version for m in c.get_latest_versions("bert", ["Staging"])] == ["1"]
    loaded = Path(mlflow.artifacts.download_artifacts("models:/bert/Production",
                                                      dst_path=str(tmp_path / "prod")))
    assert _sha(loaded / "model.safetensors") == _sha(files[1])
    with pytest.raises(errors.MlflowException) as err:
        c.transition_model_version_stage("bert", "2", "Archived")
    assert _error(err) == "INVALID_PARAMETER_VALUE" and "production" in str(err.value)
    c.transition_model_version_stage("bert", "3", "Archived")
    assert c.get_model_version("bert", "3").current_stage == "Archived"
    with as_user.open() as reg:
        assert reg.resolve("bert@production").number == 2
        assert reg.resolve("bert@staging").number == 1
    # Aliases: set, move, get, delete.
    c.set_registered_model_alias("bert", "champion", "1")
    c.set_registered_model_alias("bert", "champion", "3")
    assert c.get_model_version_by_alias("bert", "champion").version == "3"
    assert {a: v for a, v in c.get_registered_model("bert").aliases.items()} == {
        "champion": "3", "production": "2", "staging": "1"}
    c.delete_registered_model_alias("bert", "champion")
    with pytest.raises(errors.MlflowException) as err:
        c.get_model_version_by_alias("bert", "champion")
    assert _error(err) == "RESOURCE_DOES_NOT_EXIST"
    with as_user.open() as reg:
        moves = [m for m in reg.history("bert", name="champion")]
        assert len(moves) >= 3  # two moves and a delete, recorded
    # Versions are deleted by an admin only.
    with pytest.raises(errors.MlflowException) as err:
        c.delete_model_version("bert", "3")
    assert _error(err) == "PERMISSION_DENIED"
    _client(as_user, as_user.admin).delete_model_version("bert", "3")
    with pytest.raises(errors.MlflowException) as err:
        _client(as_user).get_model_version("bert", "3")
    assert _error(err) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(errors.MlflowException) as err:
        c.rename_registered_model("bert", "bert2")
    assert _error(err) == "INVALID_PARAMETER_VALUE" and "rename" in str(err.value)


def test_a_gate_refuses_an_alias_until_it_passes(as_user: Server) -> None:
    with as_user.open() as reg:
        reg.gates.apply_policy(POLICY, actor="root")
    model, _ = _fit(1)
    with mlflow.start_run():
        mlflow.log_metric("acc", 0.91)
        mlflow.sklearn.log_model(model, name="model", registered_model_name="gated",
                                 pip_requirements=REQS)
    c = _client(as_user)
    with pytest.raises(errors.MlflowException) as err:
        c.set_registered_model_alias("gated", "production", "1")
    assert _error(err) == "PERMISSION_DENIED" and "gate" in str(err.value).lower()
    with pytest.raises(errors.MlflowException) as err:
        c.transition_model_version_stage("gated", "1", "Production")
    assert _error(err) == "PERMISSION_DENIED"
    with as_user.open() as reg:
        assert "production" not in {r.name for r in reg.refs("gated")}
        assert reg.gates.run("gated@v1", channel="production").passed
    c.set_registered_model_alias("gated", "production", "1")  # now it passed its gates
    assert c.get_model_version_by_alias("gated", "production").version == "1"
    # Unprotected aliases move freely.
    c.set_registered_model_alias("gated", "candidate", "1")


def test_a_reader_token_reads_but_is_refused_writes(as_user: Server) -> None:
    c = _client(as_user)
    c.create_registered_model("readable")
    r = _client(as_user, as_user.reader)
    assert r.get_registered_model("readable").name == "readable"
    for call in (lambda: r.create_registered_model("nope"),
                 lambda: r.update_registered_model("readable", description="x"),
                 lambda: r.set_registered_model_tag("readable", "k", "v"),
                 lambda: r.create_experiment("reader-exp")):
        with pytest.raises(errors.MlflowException) as err:
            call()
        assert _error(err) == "PERMISSION_DENIED"
    model, _ = _fit(2)
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = as_user.reader
    with pytest.raises(errors.MlflowException) as err:
        mlflow.sklearn.log_model(model, name="model", registered_model_name="readable",
                                 pip_requirements=REQS)
    assert _error(err) == "PERMISSION_DENIED"
    with as_user.open() as reg:
        assert reg.versions("readable") == [] if "readable" in reg.models() else True


def test_unmappable_calls_are_mlflow_errors(as_user: Server) -> None:
    import httpx

    h = {"Authorization": f"Bearer {as_user.writer}"}
    r = httpx.post(f"{as_user.url}/api/2.0/mlflow/traces/batch-unknown", json={}, headers=h)
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    r = httpx.post(f"{as_user.url}/api/2.0/mlflow/model-versions/create", headers=h,
                   json={"name": "iris", "source": "s3://bucket/model"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "modelvc import mlflow" in r.json()["message"]
    r = httpx.post(f"{as_user.url}/ajax-api/2.0/mlflow/registered-models/create", headers=h,
                   content=b"{not json")
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = httpx.get(f"{as_user.url}/api/2.0/mlflow/registered-models/get",
                  params={"name": "../etc"}, headers=h)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = httpx.get(f"{as_user.url}/api/2.0/mlflow/registered-models/get",
                  params={"name": "iris"})
    assert r.status_code == 401
    with pytest.raises(errors.RestException):
        _client(as_user).get_model_version("iris", "99")


def test_odd_values_and_shapes_are_answered_not_500(as_user: Server, tmp_path: Path) -> None:
    import httpx

    with mlflow.start_run() as run:
        mlflow.log_metric("loss", float("nan"))
        mlflow.log_metric("acc", 0.5)
        path = tmp_path / "model.safetensors"
        write_model(path, 7)
        mlflow.log_artifact(str(path), artifact_path="w")
    c = _client(as_user)
    got = c.get_run(run.info.run_id).data.metrics
    assert np.isnan(got["loss"]) and got["acc"] == 0.5
    c.create_registered_model("odd")
    c.create_model_version("odd", f"runs:/{run.info.run_id}/w", run_id=run.info.run_id)
    with as_user.open() as reg:
        assert reg.resolve("odd@v1").metrics == {"acc": 0.5}  # NaN stays in the run
    h = {"Authorization": f"Bearer {as_user.writer}"}
    for path, body in (("registered-models/create", {"name": "odd2", "tags": {"a": 1}}),
                       ("runs/log-batch", {"run_id": run.info.run_id, "metrics": "x"}),
                       ("registered-models/search", {"max_results": "many"}),
                       ("model-versions/create", {"name": "odd", "source": 5})):
        r = httpx.post(f"{as_user.url}/api/2.0/mlflow/{path}", json=body, headers=h)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_another_writer_cannot_touch_my_run_or_staged_files(as_user: Server,
                                                            tmp_path: Path) -> None:
    import httpx

    from tests.services.server import grant_token

    bob = grant_token(as_user.registry, "bob", "writer")
    c = _client(as_user)
    run = c.create_run("0")
    path = tmp_path / "model.safetensors"
    write_model(path, 3)
    c.log_artifact(run.info.run_id, str(path), artifact_path="w")
    b = _client(as_user, bob)
    with pytest.raises(errors.MlflowException) as err:
        b.log_param(run.info.run_id, "lr", "1")
    assert _error(err) == "PERMISSION_DENIED"
    url = (f"{as_user.url}/api/2.0/mlflow-artifacts/artifacts/0/{run.info.run_id}/"
           "artifacts/w/model.safetensors")
    r = httpx.put(url, content=b"swapped", headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    r = httpx.put(f"{as_user.url}/api/2.0/mlflow-artifacts/artifacts/elsewhere/x.bin",
                  content=b"x", headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 400
    # Bob may still read it, and register it under a model he writes.
    got = httpx.get(url, headers={"Authorization": f"Bearer {bob}"})
    assert got.content == path.read_bytes()
    b.create_registered_model("bobs")
    assert b.create_model_version("bobs", f"runs:/{run.info.run_id}/w").version == "1"


def test_a_role_on_another_model_is_refused_before_the_body_is_interpreted(
        as_user: Server) -> None:
    # The early role check of a registered-model or model-version route is on the
    # model the request names (its `name`), not on "some model": a role bound to, or a
    # token capped to, model `mine` is refused for `theirs` before the handler
    # validates any other field (before, a 400 named the body's missing fields).
    import httpx

    from tests.services.server import grant_token

    _client(as_user).create_registered_model("mine")
    bound = grant_token(as_user.registry, "dave", "promoter", scope="mine")
    capped = grant_token(as_user.registry, "erin", "promoter", scopes=["promoter:mine"])
    api = f"{as_user.url}/api/2.0/mlflow"
    calls = [("POST", "model-versions/create", {}),  # no source
             ("POST", "registered-models/alias", {"version": "1"}),  # no alias
             ("GET", "registered-models/alias", {})]  # no alias
    for token in (bound, capped):
        h = {"Authorization": f"Bearer {token}"}
        for method, path, rest in calls:
            for model, want in (("theirs", 403), ("mine", 400)):
                body = {"name": model, **rest}
                r = httpx.request(method, f"{api}/{path}", headers=h,
                                  **({"params": body} if method == "GET" else {"json": body}))
                assert r.status_code == want, (token == capped, path, model, r.text)
                if want == 403:
                    assert r.json()["error_code"] == "PERMISSION_DENIED"
                    assert "theirs" in r.json()["message"]
