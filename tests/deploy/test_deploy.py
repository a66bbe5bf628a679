"""deploy/: the Dockerfile and Kubernetes manifests agree with each other and with the
server (they cannot run here): ports, probe paths that the app really serves, config
keys the server really reads, every referenced ConfigMap/Secret key, non-root user; and
the container's start-up (bootstrap.py, then `modelvc server`) runs for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelvc.registry import Registry
from modelvc.server.app import create_app
from modelvc.server.config import load_config
from tests.services.ports import free_port

from .manifests import (
    DEPLOY,
    ROOT,
    assert_entrypoint_runs_modelvc,
    assert_env_keys_exist,
    assert_non_root,
    assert_secret_templates_hold_no_secrets,
    dockerfile,
    env_sources,
    healthcheck,
    manifests,
)

K8S = DEPLOY / "k8s"


def _docs() -> dict[str, dict[str, Any]]:
    return manifests(K8S)


def _server_yaml(tmp: Path) -> Path:
    path = tmp / "server.yaml"
    path.write_text(_docs()["ConfigMap/modelvc-server"]["data"]["server.yaml"])
    return path


def _container() -> dict[str, Any]:
    dep = _docs()["Deployment/modelvc-server"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_manifests_agree_with_each_other() -> None:
    docs = _docs()
    assert set(docs) >= {"Deployment/modelvc-server", "Service/modelvc-server",
                         "ConfigMap/modelvc-server", "Secret/modelvc-database",
                         "Secret/modelvc-bucket"}
    dep = docs["Deployment/modelvc-server"]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = docs["Service/modelvc-server"]
    assert svc["spec"]["selector"].items() <= labels.items()
    c = _container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert_env_keys_exist(docs, c)
    cm = docs["ConfigMap/modelvc-server"]["data"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert set(mounts) == set(volumes)
    for item in volumes["config"]["configMap"]["items"]:
        assert item["key"] in cm
    env = {v["name"]: v.get("value") for v in c["env"]}
    assert env["MODELVC_SERVER_CONFIG"] == f"{mounts['config']}/server.yaml"
    assert env["MODELVC_SERVER_REGISTRY"] == mounts["registry"]
    # the bootstrap and the object store read these very names
    sources = env_sources()
    for name in env:
        if name not in ("MODELVC_SERVER_CONFIG", "MODELVC_SERVER_REGISTRY"):
            assert f'"{name}"' in sources, name
    assert_non_root(pod, c)


def test_secret_templates_hold_no_secrets() -> None:
    assert_secret_templates_hold_no_secrets(K8S, ["ConfigMap", "Deployment", "Service"])


def test_server_config_is_what_the_server_reads(tmp_path: Path) -> None:
    cfg = load_config(_server_yaml(tmp_path), env={}, registry=str(tmp_path / "reg"))
    c = _container()
    assert cfg.host == "0.0.0.0"
    assert cfg.port == c["ports"][0]["containerPort"]
    pod = _docs()["Deployment/modelvc-server"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > cfg.graceful_timeout
    Registry.init(tmp_path / "reg").close()
    with TestClient(create_app(cfg)) as client:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            r = client.get(c[probe]["httpGet"]["path"])
            assert r.status_code == 200, probe


def test_dockerfile() -> None:
    """One recipe for both images (EXTRAS build arg); this is the server's side of it
    (tests/deploy/test_fleet_manifests.py checks the gateway's)."""
    steps = dockerfile()
    words = [w for w, _ in steps]
    assert re.fullmatch(r"python:3\.1[1-9]-slim", dict(steps)["FROM"])
    assert "EXTRAS=server" in [a for w, a in steps if w == "ARG"]  # the server by default
    assert words.index("ARG") > words.index("FROM")  # in scope for the RUN
    assert any(w == "RUN" and '".[${EXTRAS}]"' in a for w, a in steps)
    user = [a for w, a in steps if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    pod = _docs()["Deployment/modelvc-server"]["spec"]["template"]["spec"]
    assert int(user[-1].split(":")[0]) == pod["securityContext"]["runAsUser"]
    port = _container()["ports"][0]["containerPort"]
    exposed = {int(p) for w, a in steps if w == "EXPOSE" for p in a.split()}
    assert port in exposed
    env = " ".join(a for w, a in steps if w == "ENV")
    assert f"MODELVC_SERVER_PORT={port}" in env
    assert "MODELVC_SERVER_HOST=0.0.0.0" in env
    health = json.loads(dict(steps)["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert health == ["python", "/usr/local/lib/modelvc/healthcheck.py"]
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck().probes(
        {"MODELVC_SERVER_PORT": str(port)})
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry == ["/usr/local/lib/modelvc/entrypoint.sh"]
    assert json.loads(dict(steps)["CMD"]) == ["server"]  # the Deployment passes no args
    assert "args" not in _container() and "command" not in _container()
    assert_entrypoint_runs_modelvc()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for w, a in steps:
        if w == "COPY" and "--from" not in a:
            for src in [s for s in a.split()[:-1] if not s.startswith("--")]:
                assert (ROOT / src).exists(), src
                assert f"!{src}" in ignore or f"!{src}/**" in ignore, src
    assert not (ROOT / "deploy/k8s-fleet/Dockerfile").exists()  # one recipe


def _bootstrap(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(DEPLOY / "bootstrap.py")], env=env, check=True)


def _base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELVC_", "AWS_"))}
    env["MODELVC_SERVER_REGISTRY"] = str(tmp / "registry")
    return env


def test_bootstrap_points_at_a_shared_database(tmp_path: Path) -> None:
    env = _base_env(tmp_path)
    env.update(MODELVC_META_URL=f"sqlite:///{tmp_path / 'shared.db'}",
               MODELVC_OBJECTS_URL=str(tmp_path / "bucket"), MODELVC_REGISTRY_ID="prod")
    _bootstrap(env)
    config = tmp_path / "registry" / ".modelvc" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the database password
    assert json.loads(config.read_text())["meta"] == env["MODELVC_META_URL"]
    with Registry.open(tmp_path / "registry") as reg:
        (tmp_path / "w.txt").write_text("weights")
        reg.commit(tmp_path / "w.txt", model="m", author="t", cwd=tmp_path)
    shutil.rmtree(tmp_path / "registry")  # a new pod: an empty folder, the same database
    _bootstrap(env)
    with Registry.open(tmp_path / "registry") as reg:
        assert reg.resolve("m").number == 1
    env.pop("MODELVC_META_URL")
    with pytest.raises(subprocess.CalledProcessError):
        _bootstrap(env)  # a bucket without its database is refused


def test_container_start_serves_probes(tmp_path: Path) -> None:
    """What the entrypoint does, with the ConfigMap's server.yaml: bootstrap (single-pod
    SQLite mode), then `modelvc server`; both probe paths answer."""
    env = _base_env(tmp_path)
    port = free_port()
    env.update(MODELVC_SERVER_CONFIG=str(_server_yaml(tmp_path)),
               MODELVC_SERVER_HOST="127.0.0.1", MODELVC_SERVER_PORT=str(port))
    _bootstrap(env)
    modelvc = Path(sys.executable).with_name("modelvc")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(modelvc), "server"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60  # guards against hanging only
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as r:
                    assert json.loads(r.read())["status"] == "ready"
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
        check = [sys.executable, str(DEPLOY / "healthcheck.py")]
        assert subprocess.run(check, env=env).returncode == 0  # the image's HEALTHCHECK
        env_down = env | {"MODELVC_SERVER_PORT": str(free_port()),
                          "MODELVC_GATEWAY_PORT": str(free_port())}
        assert subprocess.run(check, env=env_down).returncode == 1
    finally:
        proc.terminate()
        # uvicorn drains, then re-raises the SIGTERM it caught: -15 is a clean stop too
        assert proc.wait(timeout=60) in (0, -15), log.read_text()
