"""Gate runs on real models: a scikit-learn MLP on digits exported to ONNX (a real eval
and ONNX Runtime budgets) and a tiny transformers BERT saved as safetensors."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from modelvc.gates.policy import parse_policy
from modelvc.registry import Registry
from modelvc.registry.gate_runs import read_report

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "examples" / "ci" / "eval_digits.py"


def _policy(gates: str, model: str = "digits") -> str:
    return textwrap.dedent(f"""\
        version: 1
        models:
          {model}:
            channels:
              production:
                gates:
        """) + textwrap.indent(textwrap.dedent(gates), " " * 10)


def test_digits_onnx_eval_and_runtime_budgets(reg: Registry, digits: tuple[Path, Path, float]
                                              ) -> None:
    onnx, test_npz, acc = digits
    v = reg.commit(onnx, model="digits", metrics={"train_accuracy": 0.99})
    # Time budgets with room for a loaded machine: this checks that they are measured and
    # passed (a budget that fails is the next test's).
    pol = parse_policy(_policy(f"""\
        - eval:
            command: "{sys.executable} {EVAL} {{model}} {{data}}"
            metrics: ["accuracy >= 0.9"]
        - budget: {{size_mb: 1, params: 100000, load_ms: 20000, latency_p50_ms: 2000,
                   latency_p95_ms: 2000, samples: 30}}
        - format: {{}}
        """))
    reg._governance.apply_policy(pol, "alice")
    report = reg.gates.run("digits", channel="production", data=str(test_npz), actor="alice")
    assert report.passed, [r for r in report.results if not r.passed]
    by_name = {(r.gate, r.name): r for r in report.results}
    evaluated = by_name["eval", f"{sys.executable} {EVAL} {{model}} {{data}}"].measured
    assert evaluated["eval_samples"] == 450
    assert evaluated["accuracy"] == pytest.approx(acc)  # the real test split, via ORT
    # The eval gate's threshold is labelled as its own (a metric gate's would be "metric").
    assert by_name["eval", "accuracy >= 0.9"].measured == pytest.approx(acc)
    assert by_name["eval", "accuracy >= 0.9"].message == "from eval"  # none recorded
    params = by_name["budget", "params"].measured
    assert params == 64 * 32 + 32 + 32 * 10 + 10  # the MLP's weights and biases
    assert by_name["budget", "size_mb"].measured == pytest.approx(onnx.stat().st_size / 1e6,
                                                                  abs=1e-4)
    for key in ("load_ms", "latency_p50_ms", "latency_p95_ms"):
        assert by_name["budget", key].measured > 0
    assert report.metrics["accuracy"] == pytest.approx(acc)
    assert report.data is not None and report.data["kind"] == "file"
    # The stored report is the content-addressed blob the gate_runs row points at.
    run = reg._meta.gate_runs(v.id, "production")[-1]
    assert run.passed and run.report_id == report.report_id
    stored = read_report(reg, run)
    assert stored["version"] == v.id and len(stored["results"]) == len(report.results)
    reg.promote("digits", "production", actor="alice", create=True)


def test_digits_failing_eval_budget_and_entry_point(reg: Registry, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   digits: tuple[Path, Path, float]) -> None:
    onnx, test_npz, acc = digits
    reg.commit(onnx, model="digits")
    (tmp_path / "digits_eval.py").write_text(textwrap.dedent(f"""\
        import json, subprocess, sys
        def score(model_dir, data):
            out = subprocess.run([sys.executable, {str(EVAL)!r}, model_dir, data],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out.splitlines()[-1])
        def broken(model_dir, data):
            raise RuntimeError("no GPU here")
        """))
    monkeypatch.chdir(tmp_path)
    pol = _policy("""\
        - eval: {entry_point: "digits_eval:score", metrics: "accuracy >= 0.999"}
        - eval: {entry_point: "digits_eval:broken", metrics: "f1 >= 0.5"}
        - eval: {command: "python -c 'print(42)'"}
        - budget: {latency_p95_ms: 0.000001, samples: 3}
        """)
    report = reg.gates.run("digits", channel="production", policy=pol, data=str(test_npz))
    assert not report.passed and not report.applied and report.notes
    res = [(r.gate, r.passed, r.message) for r in report.results]
    assert res[0][:2] == ("eval", True) and report.results[0].measured["accuracy"] == (
        pytest.approx(acc))
    assert res[1][:2] == ("eval", False) and "needs >= 0.999" in res[1][2]
    assert res[2][:2] == ("eval", False) and "RuntimeError: no GPU here" in res[2][2]
    assert res[3][:2] == ("eval", False)
    assert res[4][:2] == ("eval", False) and "not JSON" not in res[4][2]  # 42 is not an object
    assert res[5][:2] == ("budget", False) and "over the budget" in res[5][2]


def test_tiny_bert_metric_format_and_size_budgets(reg: Registry, tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, vocab_size=99, max_position_embeddings=64)
    model = BertModel(cfg)
    model.save_pretrained(tmp_path / "bert")
    (tmp_path / "data.txt").write_text("tokens\n")
    v = reg.commit(tmp_path / "bert", model="bert", metrics={"loss": 1.5},
                   data=[tmp_path / "data.txt"])
    n_params = sum(t.numel() for t in model.state_dict().values())
    size_mb = v.raw_size / 1e6
    pol = parse_policy(_policy(f"""\
        - metric: ["loss <= 2", "loss >= 0"]
        - budget: {{size_mb: {size_mb + 0.001}, params: {n_params}}}
        - format: {{allow_pickle: false, require_data: true}}
        """, model="bert"))
    reg._governance.apply_policy(pol, "alice")
    report = reg.gates.run("bert", channel="production")
    assert report.passed, [r for r in report.results if not r.passed]
    assert report.metrics["params"] == n_params
    # One parameter fewer allowed, a latency budget on safetensors, a pickled save: fail.
    (tmp_path / "bert-pt").mkdir()
    torch.save(model.state_dict(), tmp_path / "bert-pt" / "pytorch_model.bin")
    # cwd outside any git work tree: no clean code commit to point at, wherever CI runs.
    reg.commit(tmp_path / "bert-pt", model="bert", metrics={"loss": 1.4}, cwd=tmp_path)
    strict = _policy(f"""\
        - budget: {{params: {n_params - 1}, latency_p95_ms: 10}}
        - format: {{require_clean_git: true}}
        """, model="bert")
    bad = reg.gates.run("bert", channel="production", policy=strict)
    fails = {r.name: r.message for r in bad.results if not r.passed}
    assert set(fails) == {"params", "latency_p95_ms", "no pickle files", "clean git commit"}
    assert "no ONNX file" in fails["latency_p95_ms"]
    assert "never unpickled" in fails["params"]
    assert "pytorch_model.bin" in fails["no pickle files"]
    assert json.dumps(bad.to_json())  # the report is plain JSON
