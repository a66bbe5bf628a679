"""The policy file: what it accepts, and errors that name the file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from modelvc.errors import InvalidPolicy, PathNotFound
from modelvc.gates.expr import ExprError, parse
from modelvc.gates.policy import load_policy, parse_policy

from .conftest import POLICY


def _error(text: str) -> str:
    with pytest.raises(InvalidPolicy) as err:
        parse_policy(textwrap.dedent(text), "ci/policy.yaml")
    return err.value.message


def test_the_documented_example_parses() -> None:
    pol = parse_policy(POLICY)
    rule = pol.rule("m", "production")
    assert rule is not None and rule.promoters == {"ci-bot"}
    assert pol.admins == {"alice"} and pol.promoters == {"bob", "ci-bot"}
    assert [g.kind for g in rule.gates] == ["metric"]
    assert pol.rule("m", "dev") is None and pol.rule("other", "production") is None
    assert pol.may_move("ci-bot", rule) and pol.may_move("alice", rule)
    assert not pol.may_move("bob", rule)
    # No roles written: anyone may move (gates still apply); an empty list: nobody.
    open_ = parse_policy("version: 1\nmodels: {m: {channels: {prod: {}}}}\n")
    closed = parse_policy("version: 1\nroles: {promoter: []}\n"
                          "models: {m: {channels: {prod: {}}}}\n")
    for p, ok in ((open_, True), (closed, False)):
        r = p.rule("m", "prod")
        assert r is not None and p.may_move("x", r) is ok


def test_full_gate_set_and_wildcard_model() -> None:
    pol = parse_policy(textwrap.dedent("""\
        version: 1
        trust: {keys: [release-key], require: true}
        models:
          "*":
            channels:
              production:
                gates:
                  - regression: ["accuracy >= production - 0.005",
                                 "latency_p95_ms <= production * 1.1"]
                  - eval: {entry_point: "pkg.mod:score", data: d/, metrics: "f1 > 0.5"}
                  - budget: {size_mb: 50, params: 1000000, load_ms: 2000, samples: 5}
                  - format: {allow_pickle: true}
                  - signature: {}
          digits:
            channels:
              production:
                gates: []
        """))
    star = pol.rule("bert", "production")
    assert star is not None and [g.kind for g in star.gates] == [
        "regression", "eval", "budget", "format", "signature"]
    assert star.gates[4].options["keys"] == ["release-key"]  # from trust.keys
    assert star.gates[0].exprs[1].threshold(10.0) == pytest.approx(11.0)
    own = pol.rule("digits", "production")
    assert own is not None and own.gates == ()  # the model's own entry wins over "*"
    assert pol.trust == {"keys": ["release-key"], "require": True}


@pytest.mark.parametrize(("text", "line", "words"), [
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - metric: \"accuracy >>= 0.9\"\n", 7, "accuracy"),
    ("version: 1\nroles:\n  admins: [a]\n", 3, "unknown key 'admins'"),
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - latency: 3\n", 7, "unknown key 'latency'"),
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - budget: {size_mb: -1}\n", 7, "positive"),
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - regression:\n              - \"accuracy >= 0.9\"\n", 8, "compares"),
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - eval: {data: x}\n", 7, "either 'command:' or 'entry_point:'"),
    ("version: 2\n", 1, "unsupported policy version"),
    ("version: 1\nmodels:\n  m:\n    channels: {prod: {gates: [{metric: 'a >= b'}]}}\n",
     4, "unknown name 'b'"),
    ("version: 1\nroles: {admin: [a}\n", 2, "not valid YAML"),
    ("version: 1\nroles:\n  admin: [a]\n  admin: [b]\n", 4, "appears twice"),
    ("version: 1\nmodels:\n  m:\n    channels:\n      prod:\n        gates:\n"
     "          - format: {allow_pickle: maybe}\n", 7, "true or false"),
])
def test_errors_name_the_file_and_line(text: str, line: int, words: str) -> None:
    msg = _error(text)
    assert msg.startswith(f"ci/policy.yaml:{line}: "), msg
    assert words in msg


def test_every_error_is_named_at_once() -> None:
    """A mistake in one gate, channel or model does not hide the others: one line each."""
    text = textwrap.dedent("""\
        version: 1
        models:
          m:
            channels:
              production:
                gates:
                  - metric: "accuracy >>= 0.9"
                  - latency: 3
                  - metric: "accuracy >= 0.9"
              staging:
                gates:
                  - eval: {}
          "bad name":
            channels: {}
        """)
    with pytest.raises(InvalidPolicy) as e:
        parse_policy(text, "p.yaml")
    lines = e.value.message.splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["7", "8", "12", "13"], lines
    assert "unknown key 'latency'" in lines[1] and "'bad name'" in lines[3]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("")
    with pytest.raises(InvalidPolicy, match="empty"):
        load_policy(tmp_path / "p.yaml")
    with pytest.raises(PathNotFound):
        load_policy(tmp_path / "nope.yaml")


def test_control_characters_are_invalid_yaml_not_a_crash() -> None:
    """Found by schemathesis (tests/campaign/test_schema.py): PUT /api/v1/policy with a
    C1 control character answered 500 (yaml's reader fails before parsing)."""
    with pytest.raises(InvalidPolicy, match=r"not valid YAML.*#x009e"):
        parse_policy("\u00c5&\n\u009e", "<policy>")


def test_expressions() -> None:
    e = parse("latency_p95_ms <= (production + 1) * 1.1")
    assert e.uses_baseline and e.threshold(9.0) == pytest.approx(11.0)
    assert e.check(10.9, 9.0) and not e.check(11.1, 9.0)
    m = parse("loss < -0.5e-1", baseline_names=())
    assert not m.uses_baseline and m.check(-0.1) and not m.check(0.0)
    for bad in ("accuracy", "accuracy >= ", ">= 0.9", "accuracy >= 0.9 0.8",
                "accuracy >= __import__('os')", "accuracy >= (0.9"):
        with pytest.raises(ExprError):
            parse(bad, baseline_names=())
