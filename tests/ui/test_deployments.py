"""The Deployments page on a registry whose metadata is on PostgreSQL: real gateways
(`modelvc serve --fleet`), a rollout driven by `modelvc deploy`, and the page following
it without a reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from modelvc.registry import Registry
from tests.fleet.conftest import fleet_reg, start_gateways  # noqa: F401
from tests.fleet.fleet_helpers import GatewayProcess
from tests.services.ports import free_port
from tests.serving.conftest import digits  # noqa: F401

from .conftest import Console, LocalUI, shot

pytestmark = pytest.mark.postgres


def _cli(repo: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "modelvc.cli.main", "--registry", str(repo),
                          *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MODELVC_AUTHOR": "ops"})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def fleet_ui(fleet_reg: Registry) -> Iterator[LocalUI]:  # noqa: F811
    repo = fleet_reg._layout.root.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvc.cli.main", "--registry", str(repo), "ui",
         "--no-browser", "--json", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True)
    assert proc.stdout is not None
    ui = LocalUI(proc, json.loads(proc.stdout.readline())["url"])
    yield ui
    proc.terminate()
    proc.wait(30)


def test_deployments_follow_a_rollout_without_reload(
        page: Page, fleet_reg: Registry,  # noqa: F811
        start_gateways: Callable[..., list[GatewayProcess]],  # noqa: F811
        fleet_ui: LocalUI, console: Console) -> None:
    repo = fleet_reg._layout.root.parent
    start_gateways(fleet_reg, 2)
    _cli(repo, "deploy", "create", "digits@production", "--name", "web", "--json")
    page.goto(fleet_ui.login_url)
    page.click("nav >> text=Deployments")
    live = page.locator("#live")
    dep = live.locator("article.deployment", has_text="web")
    expect(dep).to_contain_text("digits@production")
    gateways = dep.locator("tr.gateway")
    expect(gateways).to_have_count(2)
    for i in range(2):
        expect(gateways.nth(i).locator("td.serving")).to_have_text("v1", timeout=60_000)
        expect(gateways.nth(i)).to_contain_text("live")
    page.evaluate("() => { window.__notReloaded = true; }")
    expect(dep.locator(".behind")).to_have_count(0)
    # the channel moves and nobody rolls it out: the page says so, and what would
    fleet_reg.promote("digits@v2", "production", reason="ahead of the fleet")
    expect(dep.locator(".behind")).to_contain_text("production names v2")
    expect(dep.locator(".behind")).to_contain_text("modelvc deploy rollout web")

    _cli(repo, "deploy", "rollout", "web", "--to", "digits@v2", "--json")
    for i in range(2):  # the page polls: no reload, no navigation
        expect(gateways.nth(i).locator("td.serving")).to_have_text("v2", timeout=60_000)
    expect(dep).to_contain_text("serving v2")
    expect(dep.locator(".behind")).to_have_count(0)  # the fleet serves what it names
    assert page.evaluate("() => window.__notReloaded === true")
    shot(page, "deployments")

    page.goto(fleet_ui.base + "/m/digits/v/2")
    expect(page.locator("section[aria-labelledby=dep-h]")).to_contain_text("web")
    expect(page.locator("section[aria-labelledby=dep-h]")).to_contain_text("r1")
    assert console.errors == []
