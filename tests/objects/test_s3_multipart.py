"""Multipart uploads against a real SeaweedFS (objects/s3_multipart.py): a failed one is
aborted even when the outage that failed it also fails the first abort; what is left
anyway, gc reports and aborts once older than its grace period. Issue 11.5."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import StorageError
from modelvc.objects import S3Store
from modelvc.registry import Registry
from tests.services.s3fault import WRITES, S3Fault

from .conftest import S3Server

pytestmark = pytest.mark.s3
KEY = "ab" + "cd" * 31


def _client(server: S3Server) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.access_key,
                        aws_secret_access_key=server.secret_key)


def _uploads(server: S3Server, prefix: str) -> list[dict[str, Any]]:
    page = _client(server).list_multipart_uploads(Bucket=server.bucket, Prefix=prefix)
    return list(page.get("Uploads") or [])


@pytest.fixture
def fault(s3_server: S3Server) -> Iterator[S3Fault]:
    with S3Fault(s3_server.endpoint) as f:
        yield f


class OutageMidway(io.RawIOBase):
    """A 128 MiB source (above the multipart threshold, not seekable) that starts an
    S3 outage for writes, once 80 MiB have been read and S3 has stored a part."""

    def __init__(self, fault: S3Fault) -> None:
        self.fault, self.pos, self.size = fault, 0, 128 << 20
        self.block = os.urandom(1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self.pos >= 80 << 20 and not self.fault.refused:
            deadline = time.monotonic() + 120  # a wait for an event, not a timing
            while not any(m == "PUT" and "partNumber" in p and status == 200
                          for m, p, status in list(self.fault.log)):
                assert time.monotonic() < deadline, "S3 never stored a part"
                time.sleep(0.05)
            self.fault.refuse(WRITES)
        n = min(len(buf), self.size - self.pos, len(self.block))
        buf[:n] = self.block[:n]
        self.pos += n
        return n


def test_a_failed_upload_is_aborted_even_when_the_outage_fails_the_first_abort(
        s3_server: S3Server, fault: S3Fault) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    store = S3Store(s3_server.bucket, prefix=prefix, endpoint_url=fault.endpoint,
                    region="us-east-1", access_key=s3_server.access_key,
                    secret_key=s3_server.secret_key, max_attempts=1)
    pauses: list[float] = []

    def outage_ends(seconds: float) -> None:  # the pause before the second abort
        pauses.append(seconds)
        fault.heal()

    store.sleep = outage_ends
    with pytest.raises(StorageError):
        store.put_file(KEY, io.BufferedReader(OutageMidway(fault)))
    assert _uploads(s3_server, prefix) == []  # no parts left holding storage
    assert fault.refusals() >= 2  # a part (or the completion), then the first abort
    assert pauses == [store.abort_pauses[0]]
    assert not store.has(KEY)
    # The next attempt stores it whole.
    data = os.urandom(70 << 20)
    assert store.put_file(KEY, io.BytesIO(data)) is True
    assert store.get(KEY) == data and _uploads(s3_server, prefix) == []


def test_gc_reports_and_aborts_incomplete_uploads_older_than_the_grace_period(
        s3_server: S3Server, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    reg = Registry.init(tmp_path / "repo", objects_url=(
        f"s3://{s3_server.bucket}/{prefix}?endpoint={s3_server.endpoint}&region=us-east-1"
        f"&access_key={s3_server.access_key}&secret_key={s3_server.secret_key}"))
    try:
        save_file({"w": np.arange(4096, dtype=np.float32)}, str(tmp_path / "m.safetensors"))
        reg.commit(tmp_path / "m.safetensors", model="m")
        # What a push cut by an outage leaves: an upload with a part, never completed;
        # and one of another application sharing the prefix, which is not ours.
        c = _client(s3_server)
        ours = c.create_multipart_upload(Bucket=s3_server.bucket, Key=f"{prefix}/ab/{KEY[2:]}")
        c.upload_part(Bucket=s3_server.bucket, Key=f"{prefix}/ab/{KEY[2:]}", PartNumber=1,
                      UploadId=ours["UploadId"], Body=b"x" * (5 << 20))
        c.create_multipart_upload(Bucket=s3_server.bucket, Key=f"{prefix}/notes/todo.txt")
        young = reg.gc(grace_seconds=3600)  # maybe a writer on another host, uploading now
        assert young.incomplete_uploads == 0
        dry = reg.gc(grace_seconds=0)
        assert (dry.incomplete_uploads, dry.incomplete_upload_bytes) == (1, 5 << 20)
        assert dry.to_json()["incomplete_uploads"] == 1
        assert len(_uploads(s3_server, prefix)) == 2  # a dry run aborts nothing
        done = reg.gc(dry_run=False, grace_seconds=0)
        assert done.incomplete_uploads == 1
        assert [u["Key"] for u in _uploads(s3_server, prefix)] == [f"{prefix}/notes/todo.txt"]
        assert reg.verify().ok
        [audit] = reg.audit(action="gc")
        assert audit.after["incomplete_uploads"] == 1
    finally:
        reg.close()
