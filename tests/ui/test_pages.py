"""Every page of the seeded registry renders in Chromium, through `modelvc ui`."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import Console, LocalUI, shot


def test_models_model_version_pages(page: Page, local_ui: LocalUI, console: Console) -> None:
    page.goto(local_ui.login_url)  # the printed URL logs in and lands on the models
    expect(page.locator("h1")).to_have_text("Models")
    rows = page.locator("table.models tbody tr")
    expect(rows).to_have_count(2)
    bert = rows.filter(has_text="bert")
    expect(bert).to_contain_text("production")
    expect(bert).to_contain_text("4")  # versions
    shot(page, "models")

    page.click("text=bert")
    expect(page.locator("h1")).to_have_text("bert")
    graph = page.locator("svg.lineage")
    expect(graph).to_have_attribute("aria-label", "Lineage of bert: 4 versions from v1 to v4")
    expect(graph.locator("a.node")).to_have_count(4)
    # The channel is drawn on its version; the charts say what they show in words.
    expect(graph.locator("a.node", has_text="production")).to_contain_text("v2")
    expect(page.locator("svg.chart desc").first).to_contain_text("acc over 4 versions")
    timeline = page.locator("#timeline + form + div table, section[aria-labelledby=timeline] table")
    expect(timeline.first).to_contain_text("better acc")
    shot(page, "model")

    graph.locator("a.node", has_text="v3").click()
    expect(page.locator("h1")).to_contain_text("bert@v3")
    expect(page.locator("dl.facts")).to_contain_text("try a higher lr")
    expect(page.locator("section[aria-labelledby=files] table")).to_contain_text(
        "bert.safetensors")
    expect(page.locator("section[aria-labelledby=lineage-h]")).to_contain_text("0.01")
    page.click("dl.facts >> text=v1")  # the parent link
    expect(page.locator("h1")).to_contain_text("bert@v1")
    expect(page.locator("dl.facts")).to_contain_text("v2")  # derived: v2 and v3
    shot(page, "version")
    assert console.errors == []
