"""One major back: the MLflow 2.x client (mlflow-skinny 2.22, in a side venv, since the
test venv has 3.x) logs, registers, aliases, stages and loads against a modelvc server.
The venv is built once per machine in the test cache (tests/services/sidevenv.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.mlflow.conftest import CLIENT_ENV, Server

SPEC = ["mlflow-skinny>=2.22,<3", "scikit-learn", "pandas"]

CLIENT = r'''
import sys
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

assert mlflow.__version__.startswith("2."), mlflow.__version__
x = np.random.RandomState(0).rand(50, 4)
model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
with mlflow.start_run() as run:
    mlflow.log_param("C", 1.0)
    mlflow.log_metric("acc", 0.9)
    mlflow.sklearn.log_model(model, artifact_path="model", registered_model_name="old")
c = mlflow.MlflowClient()
c.set_registered_model_alias("old", "champion", "1")
assert (mlflow.pyfunc.load_model("models:/old@champion").predict(x) == model.predict(x)).all()
c.transition_model_version_stage("old", "1", "Staging")
assert c.get_latest_versions("old", ["Staging"])[0].version == "1"
assert (mlflow.pyfunc.load_model("models:/old/Staging").predict(x) == model.predict(x)).all()
assert [m.name for m in c.search_registered_models("name LIKE 'ol%'")] == ["old"]
print("ok", run.info.run_id)
'''


def _usable(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import mlflow, sklearn, pandas; "
                            "print(mlflow.__version__)"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.startswith("2.")


def mlflow2_venv() -> Path:
    """A venv with the MLflow 2 client, built once per machine (tests/services/sidevenv.py;
    scripts/test builds it beside ruff and mypy)."""
    from tests.services.sidevenv import side_venv

    return side_venv("mlflow2", SPEC, _usable)


@pytest.fixture(scope="session")
def mlflow2_python() -> Path:
    return mlflow2_venv()


def test_the_mlflow_2_client_works(server: Server, mlflow2_python: Path,
                                   tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CLIENT_ENV, MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=server.writer)
    r = subprocess.run([str(mlflow2_python), "-c", CLIENT], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run_id = r.stdout.split()[-1]
    with server.open() as reg:
        v = reg.resolve("old@champion")
        assert v.lineage["mlflow"]["run_id"] == run_id and v.metrics == {"acc": 0.9}
        assert reg.resolve("old@staging").id == v.id
