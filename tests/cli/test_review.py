"""What a user review of the CLI found: output that fits 80 columns, consistent empty
listings, wording, names of versions in messages, JSON that says what it means."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli.test_cli import js, run
from tests.conftest import write_model


def test_init_json_meta_is_a_valid_sqlite_url(tmp_path: Path) -> None:
    doc = js(["init", "sub"], tmp_path)
    db = (tmp_path / "sub" / ".modelvc" / "meta.db").resolve()
    assert doc["meta"] == f"sqlite:///{db}"  # four slashes: an absolute path
    assert doc["meta"].startswith("sqlite:////")


def test_redact_keeps_urls_without_secrets() -> None:
    from modelvc.scaleout import redact

    assert redact("sqlite:////srv/reg/meta.db") == "sqlite:////srv/reg/meta.db"
    assert redact("postgresql+psycopg://u:pw@db/m") == "postgresql+psycopg://u:***@db/m"
    assert redact("s3://b/p?secret_key=x&region=eu") == "s3://b/p?secret_key=***&region=eu"


@pytest.fixture
def hc(tmp_path: Path) -> Path:
    """A model (v1), a fine-tune with a long message (v2), a bf16 cast of v2 (v3), and
    a policy whose production gates are a metric and an eval with the same threshold."""
    run(["init"], tmp_path)
    base = write_model(tmp_path / "m1.safetensors", 1)
    write_model(tmp_path / "m2.safetensors", 2, base=base)
    run(["commit", "m1.safetensors", "--model", "bert", "-m", "base"], tmp_path)
    run(["commit", "m2.safetensors", "--model", "bert", "--metric", "accuracy=0.95",
         "-m", "fine-tune " + "with a long message " * 8], tmp_path)
    run(["derive", "bert@v2", "cast", "-p", "dtype=bf16", "--to", "bf16"], tmp_path)
    (tmp_path / "eval.py").write_text('import json; print(json.dumps({"accuracy": 1}))\n')
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        models:
          bert:
            channels:
              production:
                gates:
                  - metric: "accuracy >= 0.9"
                  - eval:
                      command: "{sys.executable} eval.py {{model}}"
                      metrics: ["accuracy >= 0.9"]
        """))
    run(["policy", "apply", "policy.yaml"], tmp_path)
    return tmp_path


def _fits(out: str) -> str:
    assert out.strip(), "no output"
    wide = [ln for ln in out.splitlines() if len(ln) > 80]
    assert not wide, wide
    return out


def test_output_fits_80_columns(hc: Path) -> None:
    run(["gate", "run", "bert@v2", "-c", "production"], hc)
    run(["promote", "bert@v2", "--to", "production", "--create"], hc)
    for args in (["audit"], ["diff", "bert@v2", "bert@bf16"], ["diff", "bert@v1", "bert@v2"],
                 ["log", "bert", "--all", "--graph"], ["log", "bert"],
                 ["gate", "run", "bert@v2", "-c", "production"], ["gate", "show", "bert@v2"],
                 ["gate", "show", "bert@v2", "--report"], ["show", "bert@bf16"]):
        _fits(run(args, hc).stdout)
    log = run(["log", "bert", "--all", "--graph"], hc).stdout.splitlines()
    # The derived mark follows the message: the version numbers stay in one column.
    assert log[0].startswith("* v3 ") and log[0].endswith("[cast of v2 dtype=bf16]"), log
    assert "  fine-... (main" in run(["log", "bert"], hc).stdout  # cut before the refs
    made = _fits(run(["derive", "bert@v1", "cast", "-p", "dtype=bf16", "--to", "b2"],
                     hc).stdout)
    assert made.startswith("bert@v4  ") and "(cast of bert@v1, dtype=bf16)" in made, made
    # --json keeps every bit: the whole message, full ids.
    v2 = js(["show", "bert@v2"], hc)["version"]
    assert v2["message"].count("with a long message") == 8 and len(v2["id"]) == 64


def test_error_for_an_invalid_name_fits_and_names_the_ref(hc: Path) -> None:
    for args, said in ((["show", "bert@-1"], "invalid ref 'bert@-1': '-1' is not"),
                       (["commit", "m1.safetensors", "-M", "a b"],
                        "invalid model name 'a b'")):
        p = run(args, hc, ok=False)
        assert p.returncode == 2 and said in p.stderr, p.stderr
        _fits(p.stderr)
        assert "hint: use 1-128 letters" in p.stderr


def test_every_help_fits_80_columns_and_no_summary_is_cut() -> None:
    from click.testing import CliRunner

    from modelvc.cli.main import build
    from tests.cli.test_json_everywhere import COMMANDS

    for path in [[], *COMMANDS]:
        out = CliRunner().invoke(build(), [*path, "--help"], prog_name="modelvc",
                                 terminal_width=80).output
        _fits(out)
    top = CliRunner().invoke(build(), ["--help"], prog_name="modelvc",
                             terminal_width=80).output
    listed = top.split("Commands:", 1)[1]
    assert "..." not in listed, listed
    assert "  commit            Record a file or folder as a new immutable version." in top


def test_derive_errors_name_versions_and_what_is_missing(hc: Path) -> None:
    again = run(["derive", "bert@v2", "cast", "-p", "dtype=bf16", "--to", "bf16"], hc,
                ok=False)
    assert again.returncode == 5, again.stderr
    assert "branch bert@bf16 already holds cast of bert@v2 (dtype=bf16): bert@v3" \
        in again.stderr, again.stderr
    other = run(["derive", "bert@v1", "cast", "-p", "dtype=bf16", "--to", "bf16"], hc,
                ok=False)
    assert "branch bert@bf16 is at bert@v3, not at bert@v1 (the source)" in other.stderr
    run(["branch", "create", "bert", "side", "--at", "bert@v1"], hc)
    elsewhere = run(["derive", "bert@v2", "cast", "-p", "dtype=bf16", "--to", "side"], hc,
                    ok=False)
    assert "cast of bert@v2 (dtype=bf16) is already bert@v3" in elsewhere.stderr
    for p in (again, other, elsewhere):
        assert not any(len(w) >= 40 for w in p.stderr.split()), p.stderr  # no 64-hex ids
    typo = run(["derive", "bert@v1", "castt"], hc, ok=False)
    assert typo.returncode == 3 and "no recipe named 'castt'" in typo.stderr, typo.stderr
    assert "cast, " in typo.stderr
    no_to = run(["derive", "bert@v1", "cast"], hc, ok=False)
    assert (no_to.returncode, no_to.stderr.splitlines()[0]) == (
        2, "error: derive needs --to BRANCH")
    none = run(["derive"], hc, ok=False)
    assert "derive needs SRC, RECIPE and --to BRANCH" in none.stderr
    assert "derived  cast v1 of bert@v2 (dtype=bf16)" in run(["show", "bert@bf16"],
                                                             hc).stdout


def test_gate_checks_say_where_they_come_from_and_audit_says_the_verdict(hc: Path) -> None:
    # Recorded accuracy 0.95; the eval says 1: both checks use 1 and say so.
    out = run(["gate", "run", "bert@v2", "-c", "production"], hc).stdout
    checks = [c for c in out.split("\nPASS  ")[1:] if c.startswith(("metric", "eval "))]
    assert [c.split()[0] for c in checks] == ["metric", "eval", "eval"], out
    for c in (checks[0], checks[2]):  # the metric gate's and the eval gate's threshold
        assert "accuracy >= 0.9" in c and \
            "measured 1 (from eval, recorded 0.95), expected >= 0.9" in c, out
    # A failing run: each failed check listed once, told apart by its gate.
    (hc / "eval.py").write_text('import json; print(json.dumps({"accuracy": 0.5}))\n')
    failed = run(["gate", "run", "bert@v2", "-c", "production"], hc, ok=False)
    assert failed.returncode == 5
    shown = run(["gate", "show", "bert@v2"], hc).stdout
    assert "failed: metric: accuracy >= 0.9" in shown
    assert "failed: eval: accuracy >= 0.9" in shown
    assert shown.count("failed: metric: accuracy >= 0.9") == 1, shown
    audit = [ln for ln in run(["audit", "--action", "gate"], hc).stdout.splitlines()]
    # each entry: the move, then its verdict on the line under it
    assert audit[0].split()[-3:] == ["->", "v2", "bert@production"], audit
    assert (audit[1].strip(), audit[3].strip()) == ("passed", "failed"), audit


@pytest.mark.parametrize(("args", "line", "as_json"), [
    (["models"], "(no models)", []),
    (["channel", "list", "toy"], "(no channels)", []),
    (["refs", "toy", "--kind", "tag"], "(no tags)", []),
    (["key", "list"], "(no keys)", []),
    (["token", "list"], "(no tokens)", []),
    (["role", "list"], "(no roles granted)", []),
    (["remote", "list"], "(no remotes)", {}),
    (["webhook", "list"], "(no webhooks)", []),
    (["staging", "list"], "(no staged checkpoints)", []),
])
def test_empty_listings_say_so_in_one_line(tmp_path: Path, args: list[str], line: str,
                                           as_json: object) -> None:
    run(["init"], tmp_path)
    if args[0] != "models":
        write_model(tmp_path / "m.safetensors", 1)
        run(["commit", "m.safetensors", "--model", "toy"], tmp_path)
    assert run(args, tmp_path).stdout == line + "\n"
    assert js(args, tmp_path) == as_json  # scripts see what they always saw


def test_wording_plurals_ratios_and_log_rows(hc: Path) -> None:
    out = run(["checkout", "bert@v1", str(hc / "co")], hc).stdout
    assert ": 1 file, " in out, out
    run(["commit", "m1.safetensors", "--model", "bert"], hc)  # no message
    row = run(["log", "bert"], hc).stdout.splitlines()[0]
    assert row.endswith("cli-tester  (main)"), row  # two spaces, as before a message
    verify = run(["verify"], hc).stdout
    assert verify.startswith("checked ") and verify.rstrip().endswith(": ok"), verify
    assert "(s)" not in verify


def test_small_ratios_and_interrupted_checkout() -> None:
    from modelvc.cli.main import STOPPED
    from modelvc.cli.output import ratio, times

    assert (ratio(1, 10_000), ratio(77, 1000), ratio(0, 0), times(0.0)) == (
        "<0.001x", "0.077x", "0.000x", "0.000x")
    true, again = STOPPED["checkout"]
    assert "recorded" not in true and "--force" in again


def test_exit_codes_in_help_a_suggestion_and_where_registry_goes(tmp_path: Path) -> None:
    top = run(["--help"], tmp_path).stdout
    assert "Exit codes: 0 done" in top and "5 conflict or gate failed" in top
    typo = run(["comit"], tmp_path, ok=False)
    assert typo.returncode == 2 and "did you mean 'commit'?" in typo.stderr, typo.stderr
    assert "did you mean" not in run(["xyzzy"], tmp_path, ok=False).stderr
    late = run(["models", "--registry", str(tmp_path)], tmp_path, ok=False)
    assert late.returncode == 2
    assert "--registry goes before the command" in late.stderr, late.stderr
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "| 5 | conflict, or a gate failed" in readme
