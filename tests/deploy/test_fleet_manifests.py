"""deploy/k8s-fleet/: the gateway fleet's manifests and image agree with each other and
with the gateway (they cannot run here): ports, probe paths the gateway really serves,
serve.toml keys the gateway really reads, every referenced ConfigMap/Secret key and
$(VAR), non-root user; and a pod's start-up (bootstrap.py, then `modelvc serve` with the
StatefulSet's arguments) runs for real against PostgreSQL and joins the fleet."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from modelvc.fleet.controller import Controller
from modelvc.registry import Registry
from modelvc.serving.config import load_config
from tests.fleet.fleet_helpers import get_json, wait_for
from tests.services.ports import free_port
from tests.serving.conftest import Digits, commit_onnx, digits  # noqa: F401

from . import manifests as shared

FLEET = shared.DEPLOY / "k8s-fleet"
PROBES = {"/v2/health/ready", "/v2/health/live"}  # modelvc.serving.app routes


def _docs() -> dict[str, dict[str, Any]]:
    return shared.manifests(FLEET)


def _container() -> dict[str, Any]:
    sts = _docs()["StatefulSet/modelvc-gateway"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return dict(c)


def _serve_toml() -> str:
    return str(_docs()["ConfigMap/modelvc-gateway"]["data"]["serve.toml"])


def test_manifests_agree_with_each_other() -> None:
    docs = _docs()
    assert set(docs) >= {"StatefulSet/modelvc-gateway", "Service/modelvc-gateway",
                         "Service/modelvc-gateway-pods", "ConfigMap/modelvc-gateway",
                         "Secret/modelvc-gateway-database", "Secret/modelvc-gateway-bucket"}
    sts = docs["StatefulSet/modelvc-gateway"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs[f"Service/{sts['spec']['serviceName']}"]["spec"]["clusterIP"] == "None"
    c = _container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for svc in ("Service/modelvc-gateway", "Service/modelvc-gateway-pods"):
        assert docs[svc]["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in docs[svc]["spec"]["ports"]} <= set(ports)
    assert {c[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe",
                                              "startupProbe")} == PROBES
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert all(c[p]["httpGet"]["port"] == "http" for p in ("readinessProbe",
                                                            "livenessProbe", "startupProbe"))
    assert {v["valueFrom"]["configMapKeyRef"]["name"] for v in c["env"]
            if "configMapKeyRef" in v.get("valueFrom", {})} == {"modelvc-gateway"}
    shared.assert_env_keys_exist(docs, c)
    # every $(VAR) in the arguments is defined (kubelet leaves unknown ones verbatim)
    names = {v["name"] for v in c["env"]}
    for arg in c["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in names, arg
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert set(mounts) == set(volumes)
    assert [i["key"] for i in volumes["config"]["configMap"]["items"]] == ["serve.toml"]
    env = {v["name"]: v.get("value") for v in c["env"]}
    assert c["args"][:3] == ["serve", "--config", f"{mounts['config']}/serve.toml"]
    assert env["MODELVC_SERVER_REGISTRY"] == env["MODELVC_REGISTRY"] == mounts["registry"]
    # the bootstrap and the object store read these very names
    sources = shared.env_sources()
    for name in names - {"MODELVC_REGISTRY", "MODELVC_SERVER_REGISTRY", "POD_NAME",
                         "POD_IP", "NODE_NAME"}:
        assert f'"{name}"' in sources, name
    # serve.toml is a valid gateway config listening where the probes look
    cfg = load_config(None, tomllib.loads(_serve_toml()))
    assert (cfg.host, cfg.port) == ("0.0.0.0", ports["http"])
    assert cfg.grpc_port == ports["grpc"]  # OIP over gRPC, where the Service sends it
    assert cfg.fleet is None  # fleet settings are flags (the pod's name is substituted)
    assert "--fleet" in c["args"] and "--replica-id" in c["args"]
    shared.assert_non_root(pod, c)


def test_secret_templates_hold_no_secrets() -> None:
    shared.assert_secret_templates_hold_no_secrets(
        FLEET, ["ConfigMap", "Service", "Service", "StatefulSet"])


def test_dockerfile() -> None:
    """The gateway image is deploy/Dockerfile with EXTRAS=serve,server, run with the
    StatefulSet's args (`serve ...`) after its entrypoint's bootstrap."""
    steps = shared.dockerfile()
    assert any(w == "RUN" and '".[${EXTRAS}]"' in a for w, a in steps)
    build = "--build-arg EXTRAS=serve,server"
    assert build in (FLEET / "kustomization.yaml").read_text()
    assert build in (FLEET / "statefulset.yaml").read_text()
    user = [a for w, a in steps if w == "USER"]
    pod = _docs()["StatefulSet/modelvc-gateway"]["spec"]["template"]["spec"]
    assert int(user[-1].split(":")[0]) == pod["securityContext"]["runAsUser"]
    port = _container()["ports"][0]["containerPort"]
    assert port in {int(p) for w, a in steps if w == "EXPOSE" for p in a.split()}
    assert tomllib.loads(_serve_toml())["port"] == port
    env = " ".join(a for w, a in steps if w == "ENV")
    assert f"MODELVC_GATEWAY_PORT={port}" in env
    assert f"http://127.0.0.1:{port}/v2/health/live" in shared.healthcheck().probes(
        {"MODELVC_GATEWAY_PORT": str(port)})
    assert _container()["args"][0] == "serve"
    shared.assert_entrypoint_runs_modelvc()
    assert not (FLEET / "Dockerfile").exists() and not (FLEET / "entrypoint.sh").exists()


def _pod_env(tmp: Path, meta_url: str) -> dict[str, str]:
    """The container's environment as kubelet would build it (objects: a local folder)."""
    cm = _docs()["ConfigMap/modelvc-gateway"]["data"]
    fields = {"metadata.name": "modelvc-gateway-0", "status.podIP": "127.0.0.1",
              "spec.nodeName": "node-a"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELVC_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    for var in _container()["env"]:
        ref = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"].replace("/var/lib/modelvc", str(tmp / "pod"))
        elif "fieldRef" in ref:
            env[var["name"]] = fields[ref["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in ref:
            env[var["name"]] = cm[ref["configMapKeyRef"]["key"]]
    for k in [k for k in env if k.startswith("AWS_")]:
        del env[k]
    env.update(MODELVC_META_URL=meta_url, MODELVC_OBJECTS_URL=str(tmp / "bucket"))
    return env


@pytest.mark.postgres
def test_gateway_pod_starts_and_joins_the_fleet(
        tmp_path: Path, pg_url: str, digits: Digits,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's start: deploy/entrypoint.sh (bootstrap, then `modelvc` with the StatefulSet's
    args) on an empty folder; it becomes ready, registers with the manifest's labels and
    name, and a `modelvc deploy` rollout selecting it succeeds."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    env = _pod_env(tmp_path, pg_url)
    # The registry server's side: the same database and bucket, digits v1 in production.
    server_env = env | {"MODELVC_SERVER_REGISTRY": str(tmp_path / "server")}
    subprocess.run([sys.executable, str(shared.ROOT / "deploy/bootstrap.py")], env=server_env,
                   check=True)
    with Registry.open(tmp_path / "server") as reg:
        commit_onnx(reg, tmp_path, digits.good, "v1")
        reg.promote("digits@v1", "production", reason="first", create=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "serve.toml").write_text(_serve_toml())
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)
            .replace("/etc/modelvc", str(tmp_path / "etc")) for a in _container()["args"]]
    port = free_port()
    script = (shared.DEPLOY / "entrypoint.sh").read_text().replace(
        "/usr/local/lib/modelvc/bootstrap.py", str(shared.ROOT / "deploy/bootstrap.py"))
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["sh", "-c", script, "entrypoint.sh", *args, "--host",
                                 "127.0.0.1", "--port", str(port), "--grpc-port",
                                 str(free_port())], env=env, stdout=out,
                                stderr=out)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return bool(get_json(f"http://127.0.0.1:{port}/v2/health/ready")["ready"])
            except OSError:
                return False

        wait_for(ready, "the gateway pod to be ready")
        assert get_json(f"http://127.0.0.1:{port}/v2/health/live")["live"] is True
        with Registry.open(tmp_path / "server") as reg, Controller(reg) as c:
            (r,) = reg.deployments.replicas(model="digits")
            assert (r.id, r.labels, r.address) == (
                "modelvc-gateway-0", {"app": "digits", "node": "node-a"},
                "http://127.0.0.1:8000")
            c.create("digits-production", "digits", "production",
                     selector={"app": "digits"})
            outcome = c.rollout("digits-production")
            assert outcome.ok, outcome.reason
            assert c.status("digits-production")["replicas"][0]["why"] == "in sync"
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) in (0, -15), log.read_text()
