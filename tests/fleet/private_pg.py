"""A private PostgreSQL server (initdb + pg_ctl as the postgres user, on a free port in a
temporary folder) that a test may stop and restart without disturbing the shared one."""

from __future__ import annotations

import contextlib
import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from tests.services.ports import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="modelvc-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data, self.port = self.dir / "data", free_port()
        self._as_postgres(_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8")
        self.start()
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT",
                                  poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE modelvc")
        engine.dispose()

    def url(self, db: str = "modelvc") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, cwd=self.dir)

    def _ctl(self, *args: str) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-l",
                          str(self.dir / "server.log"), "-w", *args)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=200")
        self._ctl("-o", opts, "start")

    def stop(self) -> None:
        """Fast shutdown: every session (gateways' listeners included) is cut."""
        self._ctl("-m", "fast", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
