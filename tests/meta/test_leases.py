"""Leases on PostgreSQL (meta/leases.py) held by real processes: a holder that stops
(SIGSTOP: its process and its connection stay, as a lost machine's half-open session
does) loses its lease within the lease's ttl; a live one keeps it past the ttl. Before,
the advisory lock lived as long as the session: a lost machine kept a deployment's
rollout lease until the database dropped the connection (hours), so `deploy status`
called the switch running and nothing could drop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from modelvc.meta import leases

HOLDER = """
import sys
import sqlalchemy as sa
from modelvc.meta import leases
engine = sa.create_engine(sys.argv[1])
with leases.hold(engine, "deploy:d") as got:
    print("held" if got else "busy", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    e = sa.create_engine(pg_url)
    yield e
    e.dispose()


def _holder(pg_url: str, ttl: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=os.environ | {"MODELVC_LEASE_TTL": str(ttl)})
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "held"
    return p


def _free(engine: sa.Engine) -> bool:
    with leases.hold(engine, "deploy:d") as got:
        return got


def _end(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
        p.wait(timeout=60)


def test_a_stopped_holder_loses_its_lease_within_the_ttl(pg_url: str,
                                                         engine: sa.Engine) -> None:
    p = _holder(pg_url, 2)
    try:
        assert not _free(engine)
        os.kill(p.pid, signal.SIGSTOP)
        end = time.monotonic() + 120  # only guards against hanging: ttl 2 s
        while not _free(engine):
            assert time.monotonic() < end, "the stopped holder kept its lease"
            time.sleep(0.2)
        with leases.hold(engine, "deploy:d") as got:
            assert got  # taken by someone else now
            # The holder comes back: it finds its session gone and ends its block
            # cleanly (no traceback), without touching the new holder's lock.
            os.kill(p.pid, signal.SIGCONT)
            out, err = p.communicate("\n", timeout=120)
            assert p.returncode == 0 and out.strip() == "released", err[-3000:]
            assert not _free_elsewhere(pg_url)
    finally:
        _end(p)


def _free_elsewhere(pg_url: str) -> bool:
    """Whether another process could take the lease now."""
    probe = ("import sys, sqlalchemy as sa\nfrom modelvc.meta import leases\n"
             "with leases.hold(sa.create_engine(sys.argv[1]), 'deploy:d') as got:\n"
             "    print(got)\n")
    out = subprocess.run([sys.executable, "-c", probe, pg_url], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip() == "True"


def test_a_live_holder_keeps_its_lease_past_the_ttl(pg_url: str,
                                                    engine: sa.Engine) -> None:
    """Its renewals keep the session from idling out: the lease stays taken for four
    ttls (renewed every quarter ttl: a margin of three quarters for a loaded machine)."""
    p = _holder(pg_url, 3)
    try:
        start = time.monotonic()
        while time.monotonic() - start < 4 * 3:
            assert not _free(engine)
            time.sleep(0.5)
        out, err = p.communicate("\n", timeout=120)
        assert p.returncode == 0 and out.strip() == "released", err[-3000:]
        assert _free(engine)
    finally:
        _end(p)
