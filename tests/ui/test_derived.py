"""Derived versions in the UI: the lineage graph hangs one off its source with a dashed,
labelled edge, the version page says what it was derived from and lists what was derived
from a version (issue 17). The shared seed's bert@v5 is a `cast` of bert@v2 (seed.py)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import Console, LocalUI


def test_graph_and_version_pages_show_the_derivation(page: Page, local_ui: LocalUI,
                                                     console: Console) -> None:
    page.goto(local_ui.login_url)
    page.goto(local_ui.base + "/m/bert")
    graph = page.locator("svg.lineage")
    expect(graph.locator("a.node")).to_have_count(5)
    node = graph.locator("a.node", has_text="v5")
    expect(node).to_have_attribute("aria-label", "v5 by admin: cast of bert@v2 (branch bf16), "
                                   "derived from v2 by cast (dtype=bf16)")
    expect(node.locator("text.derived")).to_have_text("[cast of v2]")
    # One dashed edge, from v5 to its source v2; the parent edges stay solid.
    expect(graph.locator(".edges path.derived")).to_have_count(1)
    expect(graph.locator(".edges path:not(.derived)")).to_have_count(3)  # v2, v3, v4
    dash = graph.locator(".edges path.derived").evaluate(
        "p => getComputedStyle(p).strokeDasharray")
    assert dash not in ("", "none")
    expect(page.locator("section[aria-labelledby=lineage] p.muted").first).to_contain_text(
        "dashed edge")

    node.click()
    expect(page.locator("h1")).to_contain_text("bert@v5")
    facts = page.locator("dl.facts")
    expect(facts.locator("dd.derived-from")).to_contain_text(
        "derived from v2 by cast (dtype=bf16)")
    expect(facts.locator("dd.derived-versions")).to_have_text("none")
    # The record in the lineage section, without the per-tensor stats.
    record = page.locator("section[aria-labelledby=lineage-h] .derivation")
    expect(record).to_contain_text("stats.max_abs_error")
    expect(record).to_contain_text("bound.rtol")
    expect(record).not_to_contain_text("per_tensor")
    facts.locator("dd.derived-from a").click()  # the link to the source
    expect(page.locator("h1")).to_contain_text("bert@v2")
    expect(page.locator("dl.facts dd.derived-versions")).to_contain_text(
        "v5 by cast (dtype=bf16)")
    expect(page.locator("dl.facts dd.derived-from")).to_have_count(0)
    page.locator("dl.facts dd.derived-versions a", has_text="v5").click()
    expect(page.locator("h1")).to_contain_text("bert@v5")
    assert console.errors == []


def test_crawl_with_a_derived_version(page: Page, local_ui: LocalUI, console: Console
                                      ) -> None:
    """No broken link or console error on the pages a derivation adds to."""
    from .test_crawl import _crawl

    page.goto(local_ui.login_url)
    seen = _crawl(page, local_ui.base + "/m/bert", console)
    assert any(u.endswith("/m/bert/v/5") for u in seen)
