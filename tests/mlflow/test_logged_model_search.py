"""`mlflow.register_model("runs:/RUN/PATH", NAME)` with the real client: MLflow 3 finds
the run's logged model by `search_logged_models(filter_string="name = 'PATH'")`, so the
logged-model search must filter (and refuse what it cannot filter, naming what it can)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

import mlflow

from .conftest import Server, client
from .test_registry_calls import REQS, _fit


def _client(server: Server) -> Any:
    return client(server)


def test_register_model_from_a_runs_uri_creates_version_1(as_user: Server) -> None:
    model, x = _fit(3)
    with mlflow.start_run() as run:
        mlflow.log_param("C", "1.0")
        mlflow.sklearn.log_model(model, name="model", pip_requirements=REQS)
    # Loading by the run's URI makes the same search (runs_artifact_repo.py).
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert (by_run.predict(x) == model.predict(x)).all()
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "from-runs")
    assert mv.version == "1" and mv.run_id == run.info.run_id
    c = _client(as_user)
    assert [v.version for v in c.search_model_versions("name = 'from-runs'")] == ["1"]
    loaded = mlflow.pyfunc.load_model("models:/from-runs/1")
    assert (loaded.predict(x) == model.predict(x)).all()
    with as_user.open() as reg:
        v = reg.resolve("from-runs@v1")
        files = {f.path for f in reg.manifest_of(v.id).files}
        assert {"MLmodel", "requirements.txt"} <= files and len(files) > 3
        assert v.params == {"C": "1.0"}
        assert v.lineage["mlflow"]["run_id"] == run.info.run_id
    # A model left empty by a registration that failed (as before this was fixed) takes
    # the version when registering again.
    c.create_registered_model("left-empty")
    again = mlflow.register_model(f"runs:/{run.info.run_id}/model", "left-empty")
    assert again.version == "1"
    assert mlflow.pyfunc.load_model("models:/left-empty/1").predict(x).tolist() == \
        model.predict(x).tolist()


def test_logged_model_search_filters_and_refuses_what_it_cannot(as_user: Server) -> None:
    c = _client(as_user)
    exp = c.create_experiment("lm-filters")
    a = c.create_logged_model(exp, name="alpha", params={"lr": "0.1"},
                              tags={"team": "vision"}, model_type="clf")
    b = c.create_logged_model(exp, name="beta", params={"lr": "0.2"})
    c.finalize_logged_model(a.model_id, "READY")

    def ids(flt: str | None = None, **kw: Any) -> list[str]:
        page = c.search_logged_models([exp], filter_string=flt, **kw)
        return [m.model_id for m in page]

    assert ids() == [b.model_id, a.model_id]  # the newest first, as MLflow
    assert ids("name = 'alpha'") == [a.model_id]
    assert ids("attributes.name LIKE 'b%' AND params.lr = '0.2'") == [b.model_id]
    assert ids("params.lr != '0.1'") == [b.model_id]
    assert ids("tags.`team` = 'vision'") == [a.model_id]
    assert ids("status = 'READY'") == [a.model_id]
    assert ids("status IN ('PENDING', 'FAILED')") == [b.model_id]
    assert ids("name NOT IN ('alpha')") == [b.model_id]
    assert ids("model_type = 'clf' AND creation_timestamp > 0") == [a.model_id]
    assert ids(f"model_id = '{a.model_id}'") == [a.model_id]
    assert ids("name = 'nothing'") == []
    assert ids(order_by=[{"field_name": "name", "ascending": True}]) == [a.model_id,
                                                                          b.model_id]
    # The fluent API's source_run_id filter of a run's own models.
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.pyfunc.log_model(name="pm", python_model=_Echo(), pip_requirements=REQS)
    found = mlflow.search_logged_models(
        experiment_ids=[exp], filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list")
    assert [m.name for m in found] == ["pm"]
    for bad, says in [("name = 'a' OR name = 'b'", "only AND"),
                      ("metrics.acc > 0.5", "no metrics"),
                      ("colour = 'red'", "no attribute 'colour'"),
                      ("status = 'SHINY'", "unknown logged model status"),
                      ("name ~ 'x'", "filters logged models by")]:
        with pytest.raises(MlflowException) as exc:
            ids(bad)
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE", bad
        assert says in exc.value.message, (bad, exc.value.message)
    with pytest.raises(MlflowException, match="orders logged models by an attribute"):
        ids(order_by=[{"field_name": "metrics.acc"}])


class _Echo(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: Any) -> Any:
        return np.asarray(model_input)
