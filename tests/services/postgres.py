"""A real PostgreSQL for tests: the server URL and throwaway databases.

`postgres_url()` uses MODELVC_TEST_PG_URL if set, else runs
scripts/start-postgres.sh (installs/starts a local cluster, creates the role).
A failure raises with the script's output, so tests fail loudly instead of skipping.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from pathlib import Path

import sqlalchemy as sa

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "start-postgres.sh"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be started or reached."""


@functools.cache
def postgres_url() -> str:
    url = os.environ.get("MODELVC_TEST_PG_URL")
    if url:
        return url
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600, check=False,
            env={k: v for k, v in os.environ.items() if k != "MODELVC_TEST_OWNER"},
        )  # without the reaper's mark: the cluster outlives this run (tests/services/reaper.py)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PostgresUnavailable(f"could not run {SCRIPT}: {err}") from err
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise PostgresUnavailable(
            f"{SCRIPT} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n"
            "set MODELVC_TEST_PG_URL to a server you have, or MODELVC_SKIP_POSTGRES=1"
        )
    return lines[-1]


def _admin(base_url: str) -> sa.Engine:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    return sa.create_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def fresh_database(base_url: str) -> str:
    """Create a uniquely named, empty database on the server; returns its URL.
    Drop it with drop_database(url)."""
    name = f"modelvc_test_{uuid.uuid4().hex[:12]}"
    engine = _admin(base_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # our own name, not input
    except sa.exc.SQLAlchemyError as err:
        raise PostgresUnavailable(f"cannot create a test database at {base_url}: {err}") from err
    finally:
        engine.dispose()
    return sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by fresh_database (connections to it are terminated)."""
    u = sa.make_url(url)
    name = u.database
    assert name and name.startswith("modelvc_test_"), f"refusing to drop {name!r}"
    admin = _admin(u.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
