"""Interoperability with the real OpenSSF `model_signing` tool (key method), both ways,
on a tiny BERT saved with save_pretrained, through both real command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelvc.registry import Registry
from tests.services import clirun
from tests.signing.conftest import require

MODELVC = [sys.executable, "-m", "modelvc.cli.main"]
MODEL_SIGNING = [sys.executable, "-m", "model_signing"]


def run(cmd: list[str], cwd: Path, *, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """model_signing as a subprocess; modelvc's command line in this process
    (tests/services/clirun.py: the same command, without a Python start-up per call)."""
    if cmd[:len(MODELVC)] == MODELVC:
        p = clirun.run(cmd[len(MODELVC):], env={"MODELVC_AUTHOR": "ci"}, cwd=cwd)
    else:
        env = {**os.environ, "MODELVC_AUTHOR": "ci"}
        env.pop("MODELVC_REGISTRY", None)
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=120,
                           check=False)
    if ok:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, vocab_size=99)
    out = tmp_path_factory.mktemp("bert") / "tiny-bert"
    BertModel(cfg).save_pretrained(out)
    (out / "tokenizer").mkdir()
    (out / "tokenizer" / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(99)))
    (out / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    return out


@pytest.fixture
def proj(tmp_path: Path, bert: Path) -> Path:
    run([*MODELVC, "init"], tmp_path)
    shutil.copytree(bert, tmp_path / "bert")
    run([*MODELVC, "commit", "bert", "-M", "bert"], tmp_path)
    return tmp_path


def test_modelvc_signature_verifies_with_model_signing(proj: Path) -> None:
    run([*MODELVC, "key", "create", "alice", "--out", "keys"], proj)
    run([*MODELVC, "sign", "bert", "--key", "keys/alice.key"], proj)
    run([*MODELVC, "verify-signature", "bert", "--key", "alice"], proj)
    p = run([*MODELVC, "verify-signature", "bert", "--key", "bob"], proj, ok=False)
    assert p.returncode == 8 and "untrusted" in p.stdout
    run([*MODELVC, "checkout", "bert", "co"], proj)
    run([*MODELVC, "signature", "export", "bert", "co"], proj)
    verify = [*MODEL_SIGNING, "verify", "key", "co", "--signature", "co/model.sig",
              "--public_key", "keys/alice.pub"]
    assert "Verification succeeded" in run(verify, proj).stdout
    # The real tool notices a changed file too.
    (proj / "co" / "config.json").write_text("{}")
    p = run(verify, proj, ok=False)
    assert p.returncode != 0 and "config.json" in p.stdout + p.stderr


def _external_key(folder: Path) -> tuple[Path, Path]:
    """A P-384 pair made outside modelvc, as `openssl ecparam` would."""
    k = ec.generate_private_key(ec.SECP384R1())
    priv, pub = folder / "ext.key", folder / "ext.pub"
    priv.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_model_signing_signature_verifies_in_modelvc(proj: Path) -> None:
    priv, pub = _external_key(proj)
    run([*MODEL_SIGNING, "sign", "key", "bert", "--private_key", str(priv),
         "--signature", "bert.sig"], proj)
    run([*MODELVC, "key", "add", "ext", str(pub)], proj)
    run([*MODELVC, "signature", "import", "bert", "bert.sig"], proj)
    (proj / "policy.yaml").write_text("version: 1\ntrust: {keys: [ext], require: true}\n")
    run([*MODELVC, "policy", "apply", "policy.yaml"], proj)
    run([*MODELVC, "verify-signature", "bert"], proj)
    run([*MODELVC, "checkout", "bert", "co"], proj)  # trust.require: signed by ext

    # A bundle over different files is refused, and so is the next, unsigned version.
    (proj / "bert" / "config.json").write_text('{"model_type": "bert"}')
    run([*MODEL_SIGNING, "sign", "key", "bert", "--private_key", str(priv),
         "--signature", "other.sig"], proj)
    p = run([*MODELVC, "signature", "import", "bert", "other.sig"], proj, ok=False)
    assert p.returncode == 6 and "files changed: config.json" in p.stderr
    run([*MODELVC, "commit", "bert", "-M", "bert"], proj)
    p = run([*MODELVC, "checkout", "bert", "co2"], proj, ok=False)
    assert p.returncode == 8 and "no valid signature by a trusted key (ext)" in p.stderr
    run([*MODELVC, "signature", "import", "bert", "other.sig"], proj)
    run([*MODELVC, "checkout", "bert", "co2"], proj)


def test_single_file_version_both_ways(reg: Registry, tmp_path: Path) -> None:
    """model-signing names the one resource of a file path `.`; so does modelvc."""
    from modelvc.signing import (
        create_key,
        export_signature,
        import_signature,
        register_key,
        sign_version,
    )
    from tests.conftest import write_model

    write_model(tmp_path / "one.safetensors")
    reg.commit(tmp_path / "one.safetensors", model="one")
    priv, pub = _external_key(tmp_path)
    register_key(reg, "ext", pub.read_bytes())
    run([*MODEL_SIGNING, "sign", "key", "one.safetensors", "--private_key", str(priv),
         "--signature", "one.sig"], tmp_path)
    import_signature(reg, "one", tmp_path / "one.sig")
    _, key = create_key(reg, "alice", tmp_path / "keys")
    sign_version(reg, "one", key)
    require(reg, "alice", "ext")
    reg.checkout("one", tmp_path / "out.safetensors")
    export_signature(reg, "one", tmp_path / "out.sig", key="alice")
    run([*MODEL_SIGNING, "verify", "key", "out.safetensors", "--signature", "out.sig",
         "--public_key", "keys/alice.pub"], tmp_path)
