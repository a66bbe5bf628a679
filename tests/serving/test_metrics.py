"""Prometheus metrics: the exposition parses and lints, and a real Prometheus server
scrapes the gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelvc.registry import Registry
from modelvc.serving.config import load_config
from modelvc.serving.gateway import Gateway
from modelvc.serving.protocol import InferRequest
from modelvc.serving.runtimes import RuntimeClosed
from tests.services.ports import free_port

from .conftest import Digits, Start
from .helpers import Caller, get_json, in_loop, wait_for


def _traffic(url: str, digits: Digits, n: int = 20) -> None:
    caller = Caller(url)
    for i in range(n):
        caller.infer(digits.x[i:i + 1], req_id=f"m{i}")
        caller.feedback(f"m{i}", int(digits.y[i]))
    caller.close()


def _exposition(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return str(resp.read().decode())


def test_exposition_has_every_family_and_lints(serve_reg: Registry, digits: Digits,
                                               start_gateway: Start) -> None:
    srv = start_gateway(serve_reg)
    _traffic(srv.url, digits)
    text = _exposition(srv.url)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in [("modelvc_requests", "counter"), ("modelvc_errors", "counter"),
                       ("modelvc_request_seconds", "histogram"),
                       ("modelvc_inflight_requests", "gauge"), ("modelvc_load_seconds", "gauge"),
                       ("modelvc_warmup_seconds", "gauge"), ("modelvc_swaps", "counter"),
                       ("modelvc_rollbacks", "counter"), ("modelvc_live_accuracy", "gauge"),
                       ("modelvc_serving_version", "gauge"),
                       ("modelvc_resident_memory_bytes", "gauge")]:
        assert fams[name].type == kind, name
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in fams.values() for s in f.samples}
    tags = (("channel", "production"), ("model", "digits"), ("version", "v1"))
    assert value[("modelvc_requests_total", tags)] == 20
    assert value[("modelvc_request_seconds_count", tags)] == 20
    assert value[("modelvc_serving_version", (("channel", "production"),
                                              ("model", "digits")))] == 1
    assert value[("modelvc_resident_memory_bytes", ())] > 10e6
    assert value[("modelvc_live_accuracy", (("model", "digits"), ("version", "v1")))] > 0.8
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (scripts/test does)")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """start(target) -> the URL of a real Prometheus scraping target every second."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus missing: apt-get install prometheus (scripts/test does)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "modelvc", "static_configs": [
                {"targets": [target.removeprefix("http://")]}]}]}))
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log))
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _up(prom: str) -> bool:
    try:
        targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
    except OSError:
        return False
    return bool(targets) and targets[0]["health"] == "up"


def _query(prom: str, q: str) -> list[Any]:
    res: list[Any] = get_json(f"{prom}/api/v1/query?query={urllib.parse.quote(q)}"
                              )["data"]["result"]
    return res


def test_real_prometheus_scrapes_the_gateway(serve_reg: Registry, digits: Digits,
                                             start_gateway: Start, prometheus: Any) -> None:
    srv = start_gateway(serve_reg)
    _traffic(srv.url, digits, 30)
    prom = prometheus(srv.url)
    wait_for(lambda: _up(prom), "Prometheus to scrape the gateway", limit=60)
    q = 'modelvc_requests_total{model="digits",version="v1",channel="production"}'
    wait_for(lambda: bool(_query(prom, q)), "the first scraped sample", limit=30)
    assert float(_query(prom, q)[0]["value"][1]) == 30
    p99 = _query(prom, "histogram_quantile(0.99, sum by (le) "
                       "(modelvc_request_seconds_bucket))")
    assert p99 and float(p99[0]["value"][1]) > 0
    assert float(_query(prom, "modelvc_serving_version")[0]["value"][1]) == 1


def test_a_request_reaching_a_freed_version_is_counted_as_the_gateways_error(
        serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    # RuntimeClosed (a predict on a version the pool already freed) is the gateway's own
    # broken invariant, not the model's fault: counted as kind "internal", never "model",
    # and not held against the version in its canary window. The invariant is broken by
    # hand here (the runtime closed under the slot); in process, no server.
    cfg = load_config(None, {"models": [{"model": "digits"}], "port": 0, "grpc_port": 0})

    async def scenario() -> tuple[BaseException, dict[str, float | None], int, int]:
        gw = Gateway(serve_reg, cfg, workdir=tmp_path / "gw")
        await gw.start()
        try:
            sm = gw.models["digits"]
            item = sm.stable.current
            assert item is not None
            item.runtime.close()
            with pytest.raises(RuntimeClosed) as got:
                await gw.infer("digits", None, InferRequest(None, {}, {"X": digits.x[:2]},
                                                            []), None)
            reg = gw.metrics.registry
            counts = {kind: reg.get_sample_value("modelvc_errors_total", {
                "model": "digits", "version": "v1", "channel": "production", "kind": kind})
                for kind in ("internal", "model")}
            window = sm.window_of(item.version.id).total
            return got.value, counts, window.requests, window.errors
        finally:
            await gw.stop()

    error, counts, requests, errors = in_loop(scenario)
    assert "already unloaded" in str(error)
    assert counts == {"internal": 1.0, "model": None}
    assert (requests, errors) == (0, 0)  # says nothing about the version itself
