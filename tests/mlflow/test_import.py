"""`modelvc import mlflow` from a real MLflow sqlite store made here: 3 registered models,
20 versions (an sklearn model logged by mlflow.sklearn, and safetensors fine-tunes),
aliases moved several times, a stage, descriptions and tags."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.mlflow.conftest import CLIENT_ENV
from tests.services.clirun import run
from tests.services.lazy import lazy

mlflow = lazy("mlflow")  # imported by the tests, not at collection

COUNTS = {"digits": 6, "encoder": 8, "head": 6}


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The MLflow store and what the test expects of it: each version's files by sha256,
    each model's aliases and stages as MLflow reports them."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("mlflow-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in CLIENT_ENV}
    os.environ.update(CLIENT_ENV)
    old_cwd = Path.cwd()
    os.chdir(root)  # the default artifact root (./mlartifacts) lands here
    mlflow.set_tracking_uri(uri)
    try:
        c = mlflow.MlflowClient(uri, uri)
        exp = c.create_experiment("import", artifact_location=(root / "art").as_uri())
        rng = np.random.RandomState(0)
        c.create_registered_model("digits", description="digits classifier",
                                  tags={"team": "vision"})
        for i in range(COUNTS["digits"]):
            x = rng.rand(80, 8)
            model = LogisticRegression(C=1.0 + i).fit(x, (x[:, 0] > 0.5).astype(int))
            with mlflow.start_run(experiment_id=exp):
                mlflow.log_params({"C": 1.0 + i})
                mlflow.log_metric("acc", 0.8 + i / 100)
                mlflow.sklearn.log_model(model, name="model", registered_model_name="digits",
                                         pip_requirements=["scikit-learn"])
        for name in ("encoder", "head"):
            base = None
            for i in range(COUNTS[name]):
                path = root / "w" / name / str(i) / "model.safetensors"
                tensors = write_model(path, 10 * i + len(name), base=base)
                base = base or tensors
                (path.parent / "config.json").write_text(json.dumps({"step": i}))
                with mlflow.start_run(experiment_id=exp) as run:
                    mlflow.log_param("step", i)
                    mlflow.log_metric("loss", 1.0 / (i + 1))
                    mlflow.log_artifacts(str(path.parent), artifact_path="weights")
                if i == 0:
                    c.create_registered_model(name)
                c.create_model_version(name, f"{run.info.artifact_uri}/weights",
                                       run_id=run.info.run_id, description=f"step {i}",
                                       tags={"step": str(i)})
        for alias, moves in (("champion", ["1", "3", "2", "5"]), ("challenger", ["4", "6"])):
            for version in moves:
                c.set_registered_model_alias("encoder", alias, version)
        for version in ("2", "4", "3"):
            c.set_registered_model_alias("digits", "champion", version)
        c.transition_model_version_stage("head", "5", "Production")
        c.transition_model_version_stage("head", "2", "Archived")
        expected: dict[str, Any] = {"uri": uri, "files": {}, "aliases": {}, "root": root}
        for name in COUNTS:
            expected["aliases"][name] = {a: str(v) for a, v in
                                         c.get_registered_model(name).aliases.items()}
            for mv in c.search_model_versions(f"name='{name}'"):
                dl = Path(mlflow.artifacts.download_artifacts(
                    f"models:/{name}/{mv.version}", dst_path=str(root / "dl" / name /
                                                                 str(mv.version))))
                expected["files"][(name, str(mv.version))] = _files(dl)
        yield expected
    finally:
        os.chdir(old_cwd)
        mlflow.set_tracking_uri(None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _import(registry: Path, uri: str, *extra: str) -> subprocess.Popen[bytes]:
    """`modelvc import mlflow` as a process (the one the kill -9 test kills)."""
    env = {**os.environ, **CLIENT_ENV, "MODELVC_AUTHOR": "migrator"}
    return subprocess.Popen([sys.executable, "-m", "modelvc.cli.main", "--registry",
                             str(registry), "import", "mlflow", "--tracking-uri", uri,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _import_here(registry: Path, uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The same command in this process (tests/services/clirun.py): what it does, not
    its process (a process start imports MLflow again, ~1.5 s of CPU)."""
    return run(["--registry", str(registry), "import", "mlflow", "--tracking-uri", uri,
                *extra], env={**CLIENT_ENV, "MODELVC_AUTHOR": "migrator"})


def _check(registry: Path, store: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Every artifact bit-exact, aliases at the same versions; the registry's state."""
    state: dict[str, Any] = {}
    with Registry.open_local(registry) as reg:
        for name, count in COUNTS.items():
            versions = reg.versions(name)
            assert len(versions) == count
            by_mlflow = {v.lineage["mlflow"]["import"]["version"]: v for v in versions}
            for (model, number), files in store["files"].items():
                if model != name:
                    continue
                out = tmp / f"{name}-{number}"
                reg.checkout(f"{name}@v{by_mlflow[number].number}", out)
                assert _files(out) == files, (name, number)
            channels = {r.name: r.version_id for r in reg.refs(name, kind="channel")}
            for alias, number in store["aliases"][name].items():
                assert channels[alias] == by_mlflow[number].id, (name, alias)
            state[name] = sorted((v.id, v.number) for v in versions), channels
        assert reg.resolve("head@production").lineage["mlflow"]["import"]["version"] == "5"
        assert reg.resolve("encoder@v2").params == {"step": "1"}
        assert reg.resolve("digits@v3").metrics == {"acc": 0.8 + 2 / 100}
    return state


def test_import_copies_everything_bit_exact_and_reports_sizes(
        store: dict[str, Any], tmp_path: Path) -> None:
    Registry.init(tmp_path / "reg").close()
    import mlflow

    uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    p = _import_here(tmp_path / "reg", store["uri"], "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    # The import leaves this process's MLflow as it was: neither URI pinned, no variable
    # left set (a pinned registry URI sent a later test's log_model to this store).
    assert {k: os.environ.get(k) for k in env} == env
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == uris
    report = json.loads(p.stdout)
    assert report["mlflow_bytes"] > 0 and 0 < report["stored_bytes"] < report["mlflow_bytes"]
    enc = next(m for m in report["models"] if m["name"] == "encoder")
    assert enc["copied"] == 8 and enc["channels"] == {"champion": 5, "challenger": 6}
    _check(tmp_path / "reg", store, tmp_path / "co")
    # Descriptions and tags are served by the MLflow API (the sidecar).
    from modelvc.mlflow.sidecar import Sidecar

    with Registry.open_local(tmp_path / "reg") as reg:
        side = Sidecar(reg.location)
        assert side.get("rm", "digits")["description"] == "digits classifier"
        assert side.get("mv", "encoder/3")["tags"] == {"step": "2"}
        assert side.get("mv", "head/2")["stage"] == "Archived"
        side.close()
    # A second run copies nothing.
    again = _import_here(tmp_path / "reg", store["uri"], "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(m["copied"] == 0 and m["skipped"] == m["versions"]
               for m in json.loads(again.stdout)["models"])


def test_kill_9_mid_import_resumes_to_the_same_result(store: dict[str, Any],
                                                      tmp_path: Path) -> None:
    Registry.init(tmp_path / "reg").close()
    p = _import(tmp_path / "reg", store["uri"])
    assert p.stderr is not None
    seen = 0
    deadline = time.monotonic() + 600  # guards against a hang only
    while seen < 7 and time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen += b"] MLflow v" in line
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert seen == 7, "the import ended before it could be interrupted"
    with Registry.open_local(tmp_path / "reg") as reg:
        partial = sum(len(reg.versions(m)) for m in reg.models())
    assert 7 <= partial < sum(COUNTS.values())
    resumed = _import_here(tmp_path / "reg", store["uri"], "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    copied = sum(m["copied"] for m in json.loads(resumed.stdout)["models"])
    assert copied == sum(COUNTS.values()) - partial
    _check(tmp_path / "reg", store, tmp_path / "co")


def test_import_from_a_tracking_server_over_http(server: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The source is an MLflow tracking server (here modelvc's own MLflow API, so the
    import reads through the REST client, with a reader token)."""
    for k, v in CLIENT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.writer)
    c = mlflow.MlflowClient(server.url, server.url)
    c.create_registered_model("remote", description="served over HTTP")
    sums = {}
    for i in range(3):
        path = tmp_path / "w" / str(i) / "model.safetensors"
        write_model(path, i)
        run = c.create_run("0")
        c.log_artifact(run.info.run_id, str(path), artifact_path="w")
        c.log_param(run.info.run_id, "i", str(i))
        c.create_model_version("remote", f"runs:/{run.info.run_id}/w", run_id=run.info.run_id)
        sums[str(i + 1)] = _files(path.parent)
    c.set_registered_model_alias("remote", "champion", "2")
    Registry.init(tmp_path / "reg").close()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.reader)  # reading is enough
    p = _import_here(tmp_path / "reg", server.url, "--models", "remote", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["models"][0]["copied"] == 3
    with Registry.open_local(tmp_path / "reg") as reg:
        for number, files in sums.items():
            reg.checkout(f"remote@v{number}", tmp_path / "co" / number)
            assert _files(tmp_path / "co" / number) == files
        assert reg.resolve("remote@champion").number == 2
        assert reg.resolve("remote@v3").params == {"i": "2"}


def test_a_missing_store_is_refused_not_created(tmp_path: Path) -> None:
    Registry.init(tmp_path / "reg").close()
    p = _import(tmp_path / "reg", f"sqlite:///{tmp_path / 'nope.db'}", "--json")
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 2 and "no MLflow database" in json.loads(out)["message"]
    assert not (tmp_path / "nope.db").exists()
