"""`modelvc init DIR --meta postgresql://... --objects s3://...` on the real PostgreSQL
and SeaweedFS: the registry works from the CLI, a second folder pointing at the same
database and bucket sees it, secrets stay out of output and other users' reach, and a
wrong URL leaves nothing behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import sqlalchemy as sa

from modelvc.registry import Registry
from tests.services import clirun
from tests.services.s3 import S3Server

from .conftest import s3_url

MODELVC = [sys.executable, "-m", "modelvc.cli.main"]


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """The real command line, in this process (tests/services/clirun.py)."""
    done = clirun.run(args)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _keys(s3: S3Server, prefix: str) -> list[str]:
    client: Any = boto3.client("s3", endpoint_url=s3.endpoint,
                               aws_access_key_id=s3.access_key,
                               aws_secret_access_key=s3.secret_key, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_init_on_postgres_and_s3(tmp_path: Path, pg: str, s3: S3Server) -> None:
    plain_pg = pg.replace("postgresql+psycopg://", "postgresql://")  # as users write it
    objects = s3_url(s3)
    prefix = objects.split("?")[0].split("/", 3)[3]
    node = tmp_path / "node"
    out = json.loads(_run("init", str(node), "--meta", plain_pg, "--objects", objects,
                          "--json").stdout)
    assert out["registry"] == str(node / ".modelvc")
    assert s3.secret_key not in json.dumps(out) and "***" in out["objects"]
    config_file = node / ".modelvc" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["meta"].startswith("postgresql+psycopg://") and config["objects"] == objects
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert not (node / ".modelvc" / "meta.db").exists()
    assert not (node / ".modelvc" / "objects").exists()

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "weights.bin").write_bytes(os.urandom(300_000))
    (ckpt / "config.json").write_text('{"layers": 2}\n')
    _run("--registry", str(node), "commit", str(ckpt), "--model", "m", "-m", "first")
    # the version is in PostgreSQL, its objects in the bucket
    engine = sa.create_engine(pg)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT number, message FROM versions")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "first")]
    assert _keys(s3, prefix)
    # a second machine's folder, pointed at the same database and bucket, sees it
    other = tmp_path / "other" / ".modelvc"
    other.mkdir(parents=True)
    other.joinpath("config.json").write_text(config_file.read_text())
    with Registry.open(other.parent) as reg:
        assert reg.resolve("m@main").message == "first"
        reg.checkout("m@v1", tmp_path / "out")
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (ckpt / "weights.bin").read_bytes()
    # the database already holds a registry: refused, nothing written
    again = _run("init", str(tmp_path / "again"), "--meta", plain_pg, "--objects", objects,
                 ok=False)
    assert again.returncode != 0 and "already holds a modelvc registry" in again.stderr
    assert not (tmp_path / "again" / ".modelvc").exists()


def test_init_with_a_wrong_url_leaves_nothing(tmp_path: Path, pg: str, s3: S3Server) -> None:
    bad_keys = s3_url(s3).replace(f"secret_key={s3.secret_key}", "secret_key=wrong")
    done = _run("init", str(tmp_path / "a"), "--meta", pg, "--objects", bad_keys, ok=False)
    assert done.returncode != 0 and "refused access" in done.stderr
    assert "wrong" not in done.stderr  # the secret is not echoed
    assert not (tmp_path / "a" / ".modelvc").exists()
    down = pg.rsplit("@", 1)[0] + "@127.0.0.1:1/nothing"
    done = _run("init", str(tmp_path / "b"), "--meta", down, "--objects", s3_url(s3), ok=False)
    assert done.returncode != 0 and "metadata database" in done.stderr
    assert not (tmp_path / "b" / ".modelvc").exists()
    done = _run("init", str(tmp_path / "c"), "--meta", "not a url", ok=False)
    assert done.returncode == 2 and "--meta must be a database URL" in done.stderr
