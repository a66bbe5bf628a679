"""open_store URLs, and `import modelvc.objects` staying free of boto3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import modelvc.objects
from modelvc.errors import UsageError
from modelvc.objects import LocalStore, MemoryStore, S3Store, open_store

from .conftest import S3Server

KEY = "ab" * 32


def test_all_is_pinned() -> None:
    assert sorted(modelvc.objects.__all__) == [
        "LocalStore",
        "MemoryStore",
        "ObjectInfo",
        "ObjectStore",
        "S3Store",
        "check_key",
        "open_store",
    ]


def test_import_does_not_load_boto3() -> None:
    code = "import sys, modelvc.objects; print('boto3' in sys.modules or 'botocore' in sys.modules)"
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {src!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_paths_and_memory(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path}/a", f"file://localhost{tmp_path}/a"):
        store = open_store(url)
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / "a"
    assert isinstance(open_store("memory://"), MemoryStore)
    assert open_store("memory://") is not open_store("memory://")


@pytest.mark.parametrize("url", ["ftp://x/y", "s3://", "s3://b/p?bogus=1", "file://otherhost/x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        open_store(url)


@pytest.mark.s3
def test_s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    url = f"s3://{s3_server.bucket}/url-test/a?endpoint={s3_server.endpoint}&region=us-east-1"
    store = open_store(url)
    assert isinstance(store, S3Store)
    assert store.prefix == "url-test/a/"
    store.replace(KEY, b"via url")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    q = f"&access_key={s3_server.access_key}&secret_key={s3_server.secret_key}"
    again = open_store(url + q)
    assert again.get(KEY) == b"via url"
