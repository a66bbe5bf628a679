"""Fixtures for signing: a registry with a small model folder committed and a key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelvc.meta.api import AuditEntry, VersionRow
from modelvc.registry import Registry
from modelvc.signing import create_key
from tests.conftest import write_model


@dataclass
class Signed:
    reg: Registry
    v1: VersionRow
    key: Path  # private key of "alice", registered
    tmp: Path


def set_policy(reg: Registry, body: str) -> None:
    """Record BODY as the applied policy, audited as `policy apply` records it."""
    digest = str(hash(body))
    reg._meta.put_policy(digest, body, "tester",
                        AuditEntry(actor="tester", action="policy", target="policy",
                                   after={"digest": digest}))


def require(reg: Registry, *keys: str) -> None:
    set_policy(reg, "trust:\n  keys: [" + ", ".join(keys) + "]\n  require: true\n")


def sql(reg: Registry, statement: str, *args: object) -> None:
    """Edit the metadata database behind the registry's back (a tampering attacker)."""
    with sqlite3.connect(reg._layout.root / "meta.db") as conn:
        conn.execute(statement, args)


def model_folder(path: Path, seed: int = 0) -> Path:
    write_model(path / "model.safetensors", seed)
    (path / "config.json").write_text('{"hidden": 64}\n')
    (path / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return path


@pytest.fixture
def signed(reg: Registry, tmp_path: Path) -> Signed:
    v1 = reg.commit(model_folder(tmp_path / "m"), model="net")
    _, key = create_key(reg, "alice", tmp_path / "keys")
    from modelvc.signing import sign_version

    sign_version(reg, "net", key)
    return Signed(reg, v1, key, tmp_path)
