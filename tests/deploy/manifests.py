"""What the server's (deploy/k8s) and the gateway fleet's (deploy/k8s-fleet) manifest
tests share: reading the manifests and the one Dockerfile, and the checks both make
(referenced keys exist, non-root pods, secret templates hold no secrets, the entrypoint
runs modelvc)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def manifests(folder: Path) -> dict[str, dict[str, Any]]:
    """kind/name -> manifest, over every YAML file in `folder`."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["apiVersion"] and doc["kind"], path
            if doc["kind"] != "Kustomization":
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def env_sources() -> str:
    """The code that reads the pods' environment: the bootstrap and the object store."""
    return (DEPLOY / "bootstrap.py").read_text() + (
        ROOT / "src/modelvc/objects/__init__.py").read_text()


def assert_env_keys_exist(docs: dict[str, dict[str, Any]], c: dict[str, Any]) -> None:
    """Every ConfigMap and Secret key the container's environment names exists."""
    secrets = {d["metadata"]["name"]: d for k, d in docs.items() if k.startswith("Secret/")}
    for var in c["env"]:
        ref = var.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            cm = docs[f"ConfigMap/{ref['configMapKeyRef']['name']}"]["data"]
            assert ref["configMapKeyRef"]["key"] in cm, var["name"]
        if "secretKeyRef" in ref:
            s = secrets[ref["secretKeyRef"]["name"]]
            assert ref["secretKeyRef"]["key"] in s["stringData"], var["name"]


def assert_non_root(pod: dict[str, Any], c: dict[str, Any]) -> None:
    """Secure defaults of a pod template and its container."""
    sec = pod["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


def assert_secret_templates_hold_no_secrets(folder: Path, kinds: list[str]) -> None:
    """Secrets are created out of band from *.example.yaml templates holding only
    CHANGE-ME values; `kubectl kustomize` (where installed) renders `kinds`."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert all((folder / r).exists() for r in kust["resources"])
    assert not any("secret" in r for r in kust["resources"])  # created out of band
    for path in folder.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Secret":
                assert path.name.endswith(".example.yaml")
                assert "data" not in doc  # no base64 blobs that could hide a real value
                for key, value in doc["stringData"].items():
                    assert "CHANGE-ME" in value, (path.name, key)
    if shutil.which("kubectl"):
        rendered = subprocess.run(["kubectl", "kustomize", str(folder)], check=True,
                                  capture_output=True, text=True).stdout
        assert sorted(d["kind"] for d in yaml.safe_load_all(rendered)) == kinds


def healthcheck() -> Any:
    """deploy/healthcheck.py, the image's HEALTHCHECK, as a module."""
    sys.path.insert(0, str(DEPLOY))
    try:
        import healthcheck  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEPLOY))
    return healthcheck


def assert_entrypoint_runs_modelvc() -> None:
    script = (DEPLOY / "entrypoint.sh").read_text()
    assert 'exec modelvc "$@"' in script
    assert os.stat(DEPLOY / "entrypoint.sh").st_mode & stat.S_IXUSR
