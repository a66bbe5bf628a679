"""UI fixtures: a seeded registry, `modelvc ui` and `modelvc server` processes, and a
real Chromium (Debian's package: Playwright cannot download browsers here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page

from tests.services.ports import free_port
from tests.services.server import ServerProcess, spawn_cli

from .seed import Seeded, seed

SHOTS = os.environ.get("MODELVC_UI_SCREENSHOTS")  # set: write docs/ui/*.png
DOCS_UI = Path(__file__).resolve().parents[2] / "docs" / "ui"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    exe = shutil.which("chromium")
    assert exe, "the UI tests need Debian's chromium: scripts/test installs it " \
                "(apt-get install -y chromium)"
    return {**browser_type_launch_args, "executable_path": exe}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("ui"))


class LocalUI:
    def __init__(self, registry: Path, url: str) -> None:
        self.registry = registry
        self.login_url = url
        self.base = url.split("/ui/")[0] + "/ui"


@pytest.fixture(scope="module")
def local_ui(seeded: Seeded) -> Iterator[LocalUI]:
    """`modelvc ui --no-browser --json` on the seeded registry, forked from the server
    processes' zygote (tests/services/server.py: it imported the server app and its UI,
    ~0.9 s of CPU a start); its output, stdout and stderr, comes through one pipe."""
    read, write = os.pipe()
    try:
        proc = spawn_cli(["--registry", str(seeded.path), "ui", "--no-browser", "--json",
                          "--port", str(free_port())],
                         {**os.environ, "MODELVC_AUTHOR": "admin"}, write)
    finally:
        os.close(write)
    with open(read) as out:
        line = out.readline()
        try:
            url = json.loads(line)["url"]
        except ValueError:
            proc.kill()
            raise AssertionError(f"modelvc ui printed {line!r}{out.read()}") from None
        ui = LocalUI(seeded.path, url)
        _wait_up(ui.base + "/login")
        yield ui
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _wait_up(url: str) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 60  # a start-up wait, not a timed assertion
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1, verify=False)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture(scope="module")
def server(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(seeded.path, tmp_path_factory.mktemp("log") / "server.log").start()
    yield s
    s.stop()


class Console:
    """Console errors and failed requests of a page: the tests assert there are none."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"{msg.text} at {msg.location}")


@pytest.fixture
def console(page: Page) -> Console:
    page.on("dialog", lambda d: d.accept())  # confirm() before an action: yes
    return Console(page)


def login(page: Page, server: ServerProcess, token: str) -> None:
    page.context.clear_cookies()  # a new session, whoever was logged in
    page.goto(server.url + "/ui/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/ui/")


def roll_back(page: Page, server: ServerProcess, model: str, channel: str,
              reason: str) -> None:
    """Roll CHANNEL back from MODEL's page, as a maintainer clicks it."""
    page.goto(f"{server.url}/ui/m/{model}")
    row = page.locator("section[aria-labelledby=channels] tr", has_text=channel)
    row.locator("input[name=reason]").fill(reason)
    row.locator("button", has_text=f"Roll back {channel}").click()


def shot(page: Page, name: str) -> None:
    """A screenshot for docs/ui.md, only when MODELVC_UI_SCREENSHOTS is set."""
    if SHOTS:
        DOCS_UI.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_UI / f"{name}.png"), full_page=False)
