"""Derived gates compare a version with its derived_from source: on the real digits MLP
(ONNX), a gate on accuracy drop refuses a badly pruned version and passes a mild one,
and an output-error gate measures both models on the same samples."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from modelvc.derive import check, derive
from modelvc.errors import InvalidPolicy
from modelvc.gates.policy import parse_policy
from modelvc.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "examples" / "ci" / "eval_digits.py"


def _policy(gates: str) -> str:
    return textwrap.dedent("""\
        version: 1
        models:
          digits:
            channels:
              production:
                gates:
        """) + textwrap.indent(textwrap.dedent(gates), " " * 10)


def test_accuracy_drop_refuses_a_bad_prune_and_passes_a_mild_one(
        reg: Registry, digits: tuple[Path, Path, float], tmp_path: Path) -> None:
    onnx, test_npz, acc = digits
    reg.commit(onnx, model="digits")
    derive(reg, "digits@v1", "prune", to="mild", params={"sparsity": "0.1"})
    derive(reg, "digits@v1", "prune", to="bad", params={"sparsity": "0.5"})
    # A one-file source stays a one-file version.
    assert reg.manifest("digits@mild").kind == "file"
    assert check(reg, "digits@mild", record=False).ok  # ONNX pruning is deterministic too
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.load(test_npz)["x"][:100])
    reg._governance.apply_policy(parse_policy(_policy(f"""\
        - derived:
            command: "{sys.executable} {EVAL} {{model}} {{data}}"
            metrics: ["accuracy >= source - 0.005"]   # at most half a point lost
            outputs: {{samples: {samples}, names: [probabilities], max_abs_error: 0.1}}
        """)), "alice")
    mild = reg.gates.run("digits@mild", channel="production", data=str(test_npz), actor="alice")
    assert mild.passed, [r for r in mild.results if not r.passed]
    by = {r.name: r for r in mild.results}
    drop = by["accuracy >= source - 0.005"]
    assert drop.expected == f"{'>='} {acc - 0.005:g} (digits@v1: {acc:g})"
    assert by["output max_abs_error"].measured < 0.1
    assert mild.metrics["output_max_abs_error"] == by["output max_abs_error"].measured
    assert mild.metrics["output_rms_error"] <= mild.metrics["output_max_abs_error"]

    bad = reg.gates.run("digits@bad", channel="production", data=str(test_npz), actor="alice")
    assert not bad.passed
    by = {r.name: r for r in bad.results}
    assert not by["accuracy >= source - 0.005"].passed
    assert by["accuracy >= source - 0.005"].measured < acc - 0.005
    assert "against the source digits@v1" in by["accuracy >= source - 0.005"].message
    assert not by["output max_abs_error"].passed
    # The source's accuracy was measured by the same eval, on the same data.
    evals = by[f"{sys.executable} {EVAL} {{model}} {{data}}"].measured
    assert evals["source"]["accuracy"] == pytest.approx(acc)


def test_a_version_not_derived_fails_and_recorded_source_metrics_count(
        reg: Registry, digits: tuple[Path, Path, float]) -> None:
    onnx, _, _ = digits
    reg.commit(onnx, model="digits", metrics={"accuracy": 0.97})
    reg._governance.apply_policy(parse_policy(_policy("""\
        - derived: {metrics: ["accuracy >= derived_from - 0.005"]}
        """)), "alice")
    plain = reg.gates.run("digits@v1", channel="production", actor="alice")
    assert not plain.passed
    assert "records no derived_from" in plain.results[0].message
    # Without an eval, the recorded metrics of both sides are compared.
    derive(reg, "digits@v1", "prune", to="p", params={"sparsity": "0.1"})
    no_metric = reg.gates.run("digits@p", channel="production", actor="alice")
    assert not no_metric.passed and "digits@v2 has no numeric metric" in \
        no_metric.results[0].message


@pytest.mark.parametrize(("gate", "error"), [
    ("derived: {}", "needs 'metrics:'"),
    ('derived: {metrics: ["accuracy >= production - 1"]}', "unknown name"),
    ("derived: {outputs: {max_abs_error: 0.001}}", "needs 'samples:'"),
    ("derived: {outputs: {samples: s.npz}}", "at least one of max_abs_error"),
    ("derived: {outputs: {samples: s.npz, max_abs_error: -1}}", "number >= 0"),
    ('derived: {data: d.npz, metrics: ["a >= source"]}', "go with 'command:'"),
])
def test_policy_errors_name_the_line(gate: str, error: str) -> None:
    with pytest.raises(InvalidPolicy) as exc:
        parse_policy(_policy(f"- {gate}\n"), "policy.yaml")
    assert error in exc.value.message and "policy.yaml:" in exc.value.message
