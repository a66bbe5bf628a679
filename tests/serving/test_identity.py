"""The gateway's automatic canary moves under an applied policy that names roles: they
run as a configured actor or as an API token's subject, and a refusal is logged,
counted, shown in /modelvc/status and retried, never silently lost."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from modelvc.gates.policy import parse_policy
from modelvc.meta.auth import new_token
from modelvc.registry import Registry
from modelvc.serving.runner import BackgroundServer

from .conftest import Digits, Start, commit_onnx
from .helpers import Caller, status, wait_for
from .test_canary import _canary, _drive

POLICY = """\
version: 1
roles:
  promoter: [{who}]
models:
  digits:
    channels:
      production:
      canary:
"""


def _apply(reg: Registry, *who: str) -> None:
    text = textwrap.dedent(POLICY).format(who=", ".join(who))
    reg._governance.apply_policy(parse_policy(text, "policy.yaml"), "tester")


def _refused(srv: BackgroundServer, channel: str, action: str) -> float:
    value = srv.gateway.metrics.registry.get_sample_value(
        "modelvc_canary_refusals_total",
        {"model": "digits", "channel": channel, "action": action, "kind": "permission"})
    return float(value or 0.0)


def test_refused_promotion_is_surfaced_then_retried(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start,
        caplog: pytest.LogCaptureFixture) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    serve_reg.promote("digits@v2", "canary", reason="try", create=True)
    _apply(serve_reg, "alice")
    caplog.set_level(logging.INFO, "modelvc.serving")
    srv = start_gateway(serve_reg, [_canary(50)], actor="bob")
    st = status(srv.url)
    assert st["identity"] == {"actor": "bob", "token": False}
    assert "bob may not promote to digits@production" in st["identity_warning"]
    _drive(srv.url, digits, lambda: status(srv.url)["refusal"] is not None)
    r = status(srv.url)["refusal"]
    assert (r["action"], r["version"], r["channel"], r["actor"], r["kind"]) == (
        "promote", 2, "production", "bob", "permission")
    assert "bob may not promote to digits@production" in r["error"]
    assert r["verdict"].startswith("canary policy: canary held")
    assert _refused(srv, "production", "promote") >= 1
    assert any("REFUSED" in m and "bob may not promote" in m for m in caplog.messages)
    assert serve_reg.resolve("digits@production").number == 1
    # The canary keeps its share meanwhile; once the policy lets bob, a retry promotes.
    _apply(serve_reg, "alice", "bob")
    wait_for(lambda: serve_reg.resolve("digits@production").number == 2, "the retry",
             limit=90)
    last = serve_reg.history("digits", "production")[-1]
    assert (last.action, last.actor) == ("promote", "bob")
    # The switch and the cleared refusal are two steps: the stable follower can see the
    # channel move (and switch) before the promotion's call returns to the loop and
    # clears the refusal (seen under load): wait for both, not for the switch alone.
    def settled() -> bool:
        st = status(srv.url)
        return st["stable"]["version"] == 2 and st["refusal"] is None \
            and st["identity_warning"] is None

    wait_for(settled, "the switch, the refusal and the warning cleared")


def test_token_identity_needs_the_promoter_role(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    serve_reg.promote("digits@v2", "canary", reason="try", create=True)
    _apply(serve_reg, "ci-bot")
    token, digest = new_token()
    serve_reg._meta.create_token(name="gateway", subject="ci-bot", secret_hash=digest,
                                scopes=[], expires_at=None, actor="tester")
    srv = start_gateway(serve_reg, [_canary(50)], token=token)
    st = status(srv.url)
    assert st["identity"] == {"actor": None, "token": True}  # the secret is never shown
    assert token not in str(st)
    assert "ci-bot needs the promoter role on model digits" in st["identity_warning"]
    _drive(srv.url, digits, lambda: status(srv.url)["refusal"] is not None)
    assert "ci-bot needs the promoter role" in status(srv.url)["refusal"]["error"]
    assert serve_reg.resolve("digits@production").number == 1
    serve_reg.roles.grant("ci-bot", "promoter", on="digits", actor="tester")
    wait_for(lambda: serve_reg.resolve("digits@production").number == 2, "the retry",
             limit=90)
    last = serve_reg.history("digits", "production")[-1]
    assert (last.action, last.actor) == ("promote", "ci-bot")


def test_refused_rollback_still_takes_traffic_off_the_canary(
        serve_reg: Registry, digits: Digits, tmp_path: Path, start_gateway: Start) -> None:
    commit_onnx(serve_reg, tmp_path, digits.broken, "v2")
    serve_reg.promote("digits@v1", "canary", reason="start equal", create=True)
    serve_reg.promote("digits@v2", "canary", reason="try the new one")
    _apply(serve_reg, "alice")
    srv = start_gateway(serve_reg, [_canary(50)])  # acts as modelvc-serve: not listed
    _drive(srv.url, digits, lambda: status(srv.url)["refusal"] is not None)
    r = status(srv.url)["refusal"]
    assert (r["action"], r["channel"], r["to"], r["actor"]) == (
        "rollback", "canary", "digits@v1", "modelvc-serve")
    assert "modelvc-serve may not roll back digits@canary" in r["error"]
    assert _refused(srv, "canary", "rollback") >= 1
    assert serve_reg.resolve("digits@canary").number == 2  # the channel did not move ...
    assert {Caller(srv.url, key=f"k{i}").infer(digits.x[:1])[1]["model_version"]
            for i in range(20)} == {"1"}  # ... but no caller is served the canary
