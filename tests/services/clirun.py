"""The `modelvc` command run in the test's own process (click's CliRunner), for tests of
what the CLI says and does rather than of the process: a CLI subprocess costs ~0.4 s of
CPU in Python start-up and imports, the same call in process a few milliseconds.

`run` returns what `subprocess.run(..., capture_output=True, text=True)` would: the exit
code, stdout and stderr apart, and an uncaught exception's traceback on stderr (so a test
asserting "Traceback" not in stderr still catches one). Keep real subprocesses for exit
on signals, start-up, and anything that depends on being a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner

from modelvc.cli.main import CLI_CACHE_MB, CLI_KEEP_COMMITTED, CLI_POOL_MB, build


def run(args: Sequence[str], *, env: Mapping[str, str | None] | None = None,
        cwd: Path | str | None = None, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`modelvc ARGS` in process. ENV overrides os.environ for the call (None unsets a
    variable), as `main()` does: the CLI's cache sizes unless ENV names them;
    MODELVC_REGISTRY is unset unless given. CWD is the working folder for the call."""
    overrides: dict[str, str | None] = {"MODELVC_CACHE_MB": CLI_CACHE_MB,
                                        "MODELVC_POOL_MB": CLI_POOL_MB,
                                        "MODELVC_KEEP_COMMITTED": CLI_KEEP_COMMITTED,
                                        "MODELVC_REGISTRY": None, **(env or {})}
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        done = CliRunner().invoke(build(), list(args), prog_name="modelvc", env=overrides,
                                  input=input)
    finally:
        os.chdir(here)
    stderr = done.stderr
    if done.exc_info is not None and not isinstance(done.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*done.exc_info))
    return subprocess.CompletedProcess(["modelvc", *args], done.exit_code, done.stdout, stderr)
