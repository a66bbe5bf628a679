"""S3Store against a real SeaweedFS: refusals, dead and frozen servers, has_many paths."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.errors import StorageError
from modelvc.objects import S3Store

from .conftest import S3Server, free_ports, make_s3_store, start_seaweed

pytestmark = pytest.mark.s3
KEY = "ab" + "cd" * 31


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[S3Server]:
    """A server this test may kill or freeze without hurting the others."""
    server = start_seaweed(tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)  # in case the test froze it
        server.stop()


def test_wrong_credentials_refused(s3_server: S3Server) -> None:
    store = S3Store(
        s3_server.bucket,
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        access_key=s3_server.access_key,
        secret_key="not-the-secret",
        max_attempts=1,
    )
    for call in (
        lambda: store.put(KEY, b"x"),
        lambda: store.get(KEY),
        lambda: store.has(KEY),
        lambda: list(store.list()),
    ):
        with pytest.raises(StorageError) as err:
            call()
        assert s3_server.endpoint in str(err.value)
        assert err.value.hint and "AWS_SECRET_ACCESS_KEY" in err.value.hint


def test_missing_bucket(s3_server: S3Server) -> None:
    store = S3Store(
        "no-such-bucket-modelvc",
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    with pytest.raises(StorageError):
        list(store.list())


def test_nothing_listening_fails_fast() -> None:
    (port,) = free_ports(1)
    store = S3Store(
        "b",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key="a",
        secret_key="b",
        max_attempts=2,
    )
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        store.get(KEY)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert time.monotonic() - start < 10


class KillingReader(io.RawIOBase):
    """A 128 MiB source that kills the server once 40 MiB have been read."""

    def __init__(self, server: S3Server) -> None:
        self.server, self.pos, self.size = server, 0, 128 << 20
        self.block = os.urandom(1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self.pos >= 40 << 20 and self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait()
        n = min(len(buf), self.size - self.pos, len(self.block))
        buf[:n] = self.block[:n]
        self.pos += n
        return n


def test_server_dies_mid_upload(own_server: S3Server) -> None:
    store = make_s3_store(own_server, read_timeout=5.0, max_attempts=2)
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        store.put_file(KEY, io.BufferedReader(KillingReader(own_server)))  # not seekable
    assert own_server.endpoint in str(err.value)
    assert time.monotonic() - start < 60


def test_frozen_server_times_out(own_server: S3Server) -> None:
    store = make_s3_store(own_server, connect_timeout=1.0, read_timeout=1.0, max_attempts=1)
    store.put(KEY, b"x")
    os.kill(own_server.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    result: list[BaseException | None] = []

    def call() -> None:
        try:
            store.get(KEY)
            result.append(None)
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(15)
    own_server.process.kill()  # a frozen weed shuts down slowly; this one is done
    assert result, "get() hung on a frozen server"
    assert isinstance(result[0], StorageError)
    assert "is the S3 endpoint up" in str(result[0])


def test_has_many_mixes_listing_and_heads(s3_server: S3Server) -> None:
    store = make_s3_store(s3_server)
    assert isinstance(store, S3Store)
    keys = [f"{i:02x}" + "5" * 62 for i in range(0, 256, 3)]
    for k in keys[::2]:
        store.put(k, b"x")
    asked = [*keys, "ff" + "0" * 62, "00" + "0" * 62]
    expected = set(keys[::2])
    for page in (1000, 7, 1):  # listing only; a page, then HEADs; HEADs mostly
        store.list_page_size = page
        assert store.has_many(asked) == expected
        assert store.has_many(asked[5:9]) == expected & set(asked[5:9])


def test_list_ignores_foreign_names(s3_server: S3Server) -> None:
    store = make_s3_store(s3_server)
    assert isinstance(store, S3Store)
    other = make_s3_store(s3_server)
    store.put(KEY, b"mine")
    other.put(KEY, b"theirs")
    client = store._client
    client.put_object(Bucket=store.bucket, Key=f"{store.prefix}README", Body=b"x")
    client.put_object(Bucket=store.bucket, Key=f"{store.prefix}ab/NOT-HEX", Body=b"x")
    assert [i.key for i in store.list()] == [KEY]
    assert store.has_many([KEY]) == {KEY}
    assert store.get(KEY) == b"mine"
