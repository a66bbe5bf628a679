"""schemathesis over the server's OpenAPI schema (/openapi.json), against a real
`modelvc server` process, as its admin: generated and mutated requests for every
operation, with two checks: no 5xx (`not_a_server_error`) and no status the schema does
not list (`status_code_conformance`; modelvc.server.openapi documents the error statuses).

The short version here gives each operation CAMPAIGN_EXAMPLES // 10 examples (at least 3)
per phase; the 5-minute run in docs/security.md is `SCHEMA_MAX_TIME=300` (fuzzing
repeats until the time is spent).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token

from .conftest import EXAMPLES

CHECKS = "not_a_server_error,status_code_conformance"


def schemathesis_command(url: str, token: str, report: Path, *, examples: int,
                         max_time: int | None = None) -> list[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed (the test extra has it)"
    cmd = [st, "run", f"{url}/openapi.json", "--checks", CHECKS,
           "--header", f"Authorization: Bearer {token}", "--workers", "1",
           "--max-examples", str(examples), "--phases", "examples,coverage,fuzzing",
           "--request-timeout", "120", "--seed", "1", "--no-color",
           "--report", "ndjson", "--report-ndjson-path", str(report)]
    return cmd + (["--max-time", str(max_time)] if max_time else [])


def test_the_schema_documents_every_answer_and_nothing_is_a_server_error(
        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with Registry.init(repo) as reg:  # something to read, promote, push and delete
        write_model(tmp_path / "model.safetensors", 0)
        reg.commit(tmp_path / "model.safetensors", model="bert", params={"lr": 0.1})
        reg.promote("bert@v1", "production", reason="first", create=True)
    admin = grant_token(repo, "root", "admin", "*")
    server = ServerProcess(repo, tmp_path / "server.log").start()
    report = tmp_path / "schemathesis.ndjson"
    max_time = int(os.environ.get("SCHEMA_MAX_TIME", "0")) or None
    try:
        run = subprocess.run(
            schemathesis_command(server.url, admin, report,
                                 examples=max(3, EXAMPLES // 10), max_time=max_time),
            capture_output=True, text=True, timeout=3600, cwd=tmp_path)
    finally:
        server.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:] + "\nserver log:\n" + server.log.read_text()[-3000:]
    assert "operations" in out.lower() and report.stat().st_size > 0, out[-3000:]
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    assert events, "schemathesis reported nothing"
    print(out[-1500:])  # the summary (pytest -s shows it; docs/security.md records a run)

