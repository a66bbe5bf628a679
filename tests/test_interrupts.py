"""Ctrl-C and SIGTERM end every one-shot command cleanly (modelvc.interrupts, the CLI's
entry): exit 130 / 143, one line saying the command stopped and nothing is half-written,
no traceback, and the registry as consistent as after any other failure (the command
then runs to its end). Real CLI processes on SQLite and PostgreSQL; tests/signal_at.py
injects the signal at a chosen moment (inside the pool's pre-ping, or at the Nth call).
Before the fix, a SIGINT in the PostgreSQL pre-ping came out as "the metadata database
failed: can't change 'autocommit' now" (exit 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.clirun import run

SIGNAL_AT = Path(__file__).parent / "signal_at.py"


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry with a@v1 and a@v2, channel production at v1."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    reg = Registry.init(tmp_path / "repo", meta_url=url)
    ck = tmp_path / "ck"
    ck.mkdir()
    for i in (1, 2):
        (ck / "w.bin").write_bytes(bytes([i]) * 256)
        reg.commit(ck, model="a", branch="main", message=f"v{i}")
    reg.promote("a@v1", "production", reason="first", create=True)
    reg.close()
    return tmp_path / "repo"


def _cli(repo: Path, *args: str, at: str | None = None, sig: str = "SIGINT",
         ignore_int: bool = False) -> subprocess.CompletedProcess[str]:
    """`modelvc ARGS`: in a process of its own when a signal is sent to it (AT), else in
    this process (tests/services/clirun.py): the checks after an interruption are about
    what the registry holds, not about their process (~0.5 s of CPU each saved)."""
    if at is None:
        return run(["--registry", str(repo), *args], env={"MODELVC_AUTHOR": "tester"})
    return subprocess.run([sys.executable, str(SIGNAL_AT), at, sig, "--registry", str(repo),
                           *args], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"MODELVC_AUTHOR": "tester"},
                          preexec_fn=_ignore_sigint if ignore_int else None)


def _points(repo: Path, *args: str, fractions: tuple[float, ...]) -> list[int]:
    """`call:` points at FRACTIONS of the function calls of `modelvc ARGS` run once to
    its end: they stay spread over the command however its start-up changes."""
    p = _cli(repo, *args, at="count:0")
    assert p.returncode == 0, p.stderr
    calls = int(p.stderr.rsplit("signal-at: calls ", 1)[1].split()[0])
    return [max(1, int(calls * f)) for f in fractions]


def _ignore_sigint() -> None:
    """What a shell does to a command started with `&` from a script (or nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupted(p: subprocess.CompletedProcess[str], sig: str, what: str = "promote"
                 ) -> None:
    assert "signal-at: sent" in p.stderr, p.stderr
    lines = p.stderr.replace("signal-at: sent\n", "").strip().splitlines()
    assert p.returncode == 128 + signal.Signals[sig], (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"interrupted by {sig}: `modelvc {what}` stopped"), lines


def _consistent(repo: Path) -> None:
    """The audit chain verifies and the interrupted promote finishes when run again."""
    audit = _cli(repo, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    again = _cli(repo, "promote", "a@v2", "--to", "production", "--reason", "again")
    assert again.returncode == 0, again.stderr
    reg = Registry.open(repo)
    try:
        assert reg.ref("a", "production").version_id == reg.resolve("a@v2").id
    finally:
        reg.close()


@pytest.mark.parametrize("repo", ["postgresql"], indirect=True)
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_ctrl_c_inside_the_pool_pre_ping_is_an_interruption(repo: Path, nth: int) -> None:
    p = _cli(repo, "promote", "a@v2", "--to", "production", "--reason", "r",
             at=f"ping:{nth}")
    _interrupted(p, "SIGINT")
    _consistent(repo)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_at_any_point_of_a_command_is_an_interruption(repo: Path, sig: str
                                                               ) -> None:
    # Points spread over the command: each run ends as an interruption, or finishes if
    # the signal came after its last call.
    fired = 0
    points = _points(repo, "promote", "a@v2", "--to", "production", "--reason", "count",
                     fractions=(0.02, 0.15, 0.6))
    rb = _cli(repo, "promote", "a@v1", "--to", "production", "--reason", "back")
    assert rb.returncode == 0, rb.stderr
    for nth in points:
        p = _cli(repo, "promote", "a@v2", "--to", "production", "--reason", "r",
                 at=f"call:{nth}", sig=sig)
        if "signal-at: sent" in p.stderr and p.returncode != 0:
            _interrupted(p, sig)
            fired += 1
        else:
            assert p.returncode == 0, p.stderr
        _consistent(repo)
        rb = _cli(repo, "promote", "a@v1", "--to", "production", "--reason", "back")
        assert rb.returncode == 0, rb.stderr
    assert fired >= 2


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_commit_leaves_the_registry_whole(repo: Path, sig: str,
                                                         tmp_path: Path) -> None:
    # The data path: objects written, then one transaction. Interrupted anywhere, the
    # registry verifies and the commit runs again to its end.
    ck, other = tmp_path / "big", tmp_path / "other"
    for folder in (ck, other):  # the same shape, other bytes: the count commits no dedup
        folder.mkdir()
        (folder / "w.bin").write_bytes(os.urandom(3 << 20))
    points = _points(repo, "commit", str(other), "--model", "c", "-m", "count",
                     fractions=(0.08, 0.3, 0.7))
    fired = 0
    for nth in points:
        p = _cli(repo, "commit", str(ck), "--model", "b", "-m", "m", at=f"call:{nth}",
                 sig=sig)
        if "signal-at: sent" in p.stderr and p.returncode != 0:
            _interrupted(p, sig, "commit")
            fired += 1
        else:
            assert p.returncode == 0, p.stderr
        verify = _cli(repo, "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert fired >= 2
    again = _cli(repo, "commit", str(ck), "--model", "b", "-m", "again")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("repo", ["sqlite"], indirect=True)
def test_a_command_started_with_sigint_ignored_still_stops_cleanly_on_sigterm(repo: Path
                                                                              ) -> None:
    # Before: the CLI handled neither signal when SIGINT came ignored (a background
    # `modelvc push &` from a script), so `kill` ended it with no word (exit -15).
    p = _cli(repo, "promote", "a@v2", "--to", "production", "--reason", "r",
             at="call:30000", sig="SIGTERM", ignore_int=True)
    _interrupted(p, "SIGTERM")
    _consistent(repo)
    # SIGINT stays ignored, as the shell asked: the command runs to its end.
    q = _cli(repo, "promote", "a@v1", "--to", "production", "--reason", "r",
             at="call:30000", sig="SIGINT", ignore_int=True)
    assert "signal-at: sent" in q.stderr and q.returncode == 0, (q.returncode, q.stderr)
