"""Every page reachable from the models page: no broken links, no console errors, text
alternatives for every chart, keyboard navigation, and a phone-width layout."""

from __future__ import annotations

from urllib.parse import urldefrag, urlparse

from playwright.sync_api import Page, expect

from tests.services.server import ServerProcess

from .conftest import Console, LocalUI, login, shot
from .seed import Seeded

MAX_PAGES = 300


def _crawl(page: Page, start: str, console: Console) -> dict[str, int]:
    origin = urlparse(start)
    seen: dict[str, int] = {}
    queue = [start]
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        resp = page.goto(url)
        assert resp is not None
        seen[url] = resp.status
        # Charts and graphs say what they show; images have alt text.
        bad = page.eval_on_selector_all(
            "svg:not([aria-hidden=true]), img",
            "els => els.filter(e => e.tagName.toLowerCase() === 'img' ? !e.alt :"
            " !(e.getAttribute('aria-label') || e.querySelector('title, desc')))"
            ".map(e => e.outerHTML.slice(0, 120))")
        assert bad == [], (url, bad)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for h in hrefs:
            h = urldefrag(h)[0]
            p = urlparse(h)
            if (p.scheme, p.netloc) != (origin.scheme, origin.netloc):
                continue
            if not p.path.startswith("/ui") or "/login" in p.path:
                continue
            if h not in seen and h not in queue:
                queue.append(h)
    broken = {u: s for u, s in seen.items() if s >= 400}
    assert broken == {}
    assert console.errors == []
    return seen


def test_crawl_the_server_ui_as_admin(page: Page, server: ServerProcess, seeded: Seeded,
                                      console: Console) -> None:
    login(page, server, seeded.tokens["admin"])
    seen = _crawl(page, server.url + "/ui/", console)
    paths = {urlparse(u).path for u in seen}
    # every kind of page was reached by following links
    for want in ("/ui/", "/ui/m/bert", "/ui/m/bert/v/4", "/ui/m/resnet/v/1", "/ui/compare",
                 "/ui/audit"):
        assert want in paths, (want, sorted(paths))
    page.goto(server.url + "/ui/audit")
    expect(page.locator("p.ok[role=status]")).to_contain_text("Hash chain verified")
    shot(page, "audit")
    page.fill("#f-action", "tag")
    page.click("text=Filter")
    rows = page.locator("table.audit tbody tr")
    expect(rows).not_to_have_count(0)
    for text in rows.all_inner_texts():
        assert "\ttag\t" in text, text
    page.fill("#f-action", "")
    page.fill("#f-since", "2100-01-01T00:00:00")
    page.click("text=Filter")
    expect(page.locator("table.audit tbody tr")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("No entries match")


def test_crawl_the_local_ui(page: Page, local_ui: LocalUI, console: Console) -> None:
    page.goto(local_ui.login_url)
    seen = _crawl(page, local_ui.base + "/", console)
    assert len(seen) >= 10


def test_keyboard_reaches_a_version_through_the_graph(page: Page, local_ui: LocalUI,
                                                      console: Console) -> None:
    page.goto(local_ui.login_url)

    def tab_to(text: str) -> None:
        for _ in range(80):
            page.keyboard.press("Tab")
            label = page.evaluate("() => { const e = document.activeElement;"
                                  " return (e.getAttribute('aria-label') || e.textContent"
                                  " || '').trim(); }")
            if label.startswith(text):
                return
        raise AssertionError(f"Tab never reached {text!r}")

    tab_to("Skip to content")
    tab_to("bert")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("bert")
    tab_to("v4 by admin")  # a version of the lineage graph
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("bert@v4")
    assert console.errors == []


def test_at_time_lookup(page: Page, local_ui: LocalUI) -> None:
    page.goto(local_ui.login_url)
    page.goto(local_ui.base + "/m/bert")
    page.select_option("#at_channel", "production")
    page.fill("#at_time", "2000-01-01T00:00:00")
    page.click("text=Look up")
    expect(page.locator(".notice[role=status]")).to_contain_text("pointed at nothing")
    page.fill("#at_time", "2100-01-01T00:00:00")
    page.click("text=Look up")
    expect(page.locator(".notice[role=status]")).to_contain_text("production pointed at v")


def test_phone_width(page: Page, local_ui: LocalUI, console: Console) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(local_ui.login_url)
    for path in ("/", "/m/bert", "/m/bert/v/2", "/compare?r=bert@v1&r=bert@v2&r=bert@v3",
                 "/audit"):
        page.goto(local_ui.base + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - "
                                 "window.innerWidth")
        assert overflow <= 1, (path, overflow)
        if path == "/m/bert":
            shot(page, "model-phone")
    assert console.errors == []
