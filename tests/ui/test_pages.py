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
    expect(bert).to_contain_text("5")  # versions
    shot(page, "models")

    page.click("text=bert")
    expect(page.locator("h1")).to_have_text("bert")
    graph = page.locator("svg.lineage")
    expect(graph).to_have_attribute("aria-label", "Lineage of bert: 5 versions from v1 to v5")
    expect(graph.locator("a.node")).to_have_count(5)
    # v5 is derived from v2 (cast to bf16): hung off it by a dashed, labelled edge.
    expect(graph.locator("a.node", has_text="v5").locator("text.derived")).to_have_text(
        "[cast of v2]")
    # The channel is drawn on its version; the charts say what they show in words.
    expect(graph.locator("a.node", has_text="production")).to_contain_text("v2")
    expect(page.locator("svg.chart desc").first).to_contain_text("acc over 4 versions")
    timeline = page.locator("#timeline + form + div table, section[aria-labelledby=timeline] table")
    expect(timeline.first).to_contain_text("better acc")
    promoted = timeline.first.locator("tr", has_text="better acc")
    expect(promoted).to_contain_text("maint")
    expect(promoted.locator("td").last).to_contain_text("passed")  # the run that cleared it
    forced = timeline.first.locator("tr", has_text="first release")
    expect(forced).to_contain_text("gates skipped (force)")
    shot(page, "model")

    graph.locator("a.node", has_text="v3").click()
    expect(page.locator("h1")).to_contain_text("bert@v3")
    expect(page.locator("dl.facts")).to_contain_text("try a higher lr")
    files = page.locator("section[aria-labelledby=files] table")
    expect(files).to_contain_text("bert.safetensors")
    # Stored bytes per file (reg.storage): v3 is a fine-tune of v1, stored as deltas.
    row = files.locator("tr", has_text="bert.safetensors")
    expect(row.locator("td").nth(4)).to_contain_text("delta")
    expect(page.locator("section[aria-labelledby=lineage-h]")).to_contain_text("0.01")
    expect(page.locator("section[aria-labelledby=sig-h]")).to_contain_text("Not signed")
    page.click("dl.facts >> text=v1")  # the parent link
    expect(page.locator("h1")).to_contain_text("bert@v1")
    expect(page.locator("dl.facts")).to_contain_text("v2")  # derived: v2 and v3
    page.click("dl.facts >> text=v2")
    signed = page.locator("section[aria-labelledby=sig-h]")
    expect(signed.locator("[role=status]")).to_contain_text("Verified")
    expect(signed.locator("table")).to_contain_text("release")
    expect(signed.locator("table")).to_contain_text("valid")
    shot(page, "version")
    assert console.errors == []


def test_compare_params_metrics_and_tensor_heatmap(page: Page, local_ui: LocalUI,
                                                   console: Console) -> None:
    page.goto(local_ui.login_url)
    page.goto(local_ui.base + "/m/bert")
    pick = page.locator("form.compare-pick")
    # checked by default: the newest version and its parent (v5 is derived from v2)
    checked = pick.locator("input:checked")
    expect(checked).to_have_count(2)
    assert [checked.nth(i).get_attribute("value") for i in range(2)] == [
        "bert@v5", "bert@v2"]
    pick.locator("input[value='bert@v5']").uncheck()
    pick.locator("input[value='bert@v4']").uncheck()
    pick.locator("input[value='bert@v3']").uncheck()
    pick.locator("input[value='bert@v2']").check()
    pick.locator("input[value='bert@v1']").check()
    pick.locator("button").click()
    expect(page.locator("h1")).to_have_text("Compare bert@v2, bert@v1")
    table = page.locator("table.compare")
    expect(table.locator("tr.differs", has_text="epochs")).to_contain_text("2")
    expect(table.locator("tr.differs", has_text="acc")).to_contain_text("0.86")
    # list values compare as values, and case counts ("sgd" then "SGD")
    expect(table.locator("tr.differs", has_text="hidden")).to_contain_text("[128, 64]")
    expect(table.locator("tr.differs", has_text="optimizer")).to_contain_text("SGD")
    expect(table.locator("tr:not(.differs)", has_text="lr")).to_have_count(1)
    expect(table).to_contain_text("tag:paper")
    heat = page.locator("table.heat tbody")
    # floats moved by about 1e-3 of their scale; the integer position ids did not move
    expect(heat.locator("tr", has_text="position_ids").locator("td")).to_have_text("same")
    changed = heat.locator("tr", has_text="layer.0.weight").locator("td")
    rel = float(changed.inner_text())
    assert 1e-4 < rel < 1e-2, rel
    expect(page.locator(".heat-legend span")).to_have_text(
        ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1"])
    page.click(".crumbs >> text=bert")  # back to the model
    expect(page.locator("h1")).to_have_text("bert")
    shot(page, "compare")
    assert console.errors == []


def test_refs_in_version_urls_the_login_label_and_the_default_order(
        page: Page, local_ui: LocalUI, console: Console) -> None:
    page.context.clear_cookies()
    page.goto(local_ui.base + "/")
    expect(page.locator("label[for=token]")).to_contain_text("UI key")  # not an API token
    page.goto(local_ui.login_url)
    # a tag (or channel, branch, id prefix) names a version: its page, by number
    page.goto(local_ui.base + "/m/bert/v/paper")
    expect(page).to_have_url(local_ui.base + "/m/bert/v/2")
    expect(page.locator("h1")).to_contain_text("bert@v2")
    page.goto(local_ui.base + "/m/bert/v/production")
    expect(page.locator("h1")).to_contain_text("bert@v")
    # by activity: the most recently active model first, unless asked otherwise
    page.goto(local_ui.base + "/?sort=activity")
    expect(page.locator("#order")).to_have_value("desc")
    names = page.locator("table.models tbody tr td:first-child a").all_inner_texts()
    page.goto(local_ui.base + "/?sort=activity&order=asc")
    assert page.locator("table.models tbody tr td:first-child a").all_inner_texts() == (
        names[::-1])
    page.goto(local_ui.base + "/")
    expect(page.locator("#order")).to_have_value("asc")  # names A to Z
    assert console.errors == []


def test_channels_refresh_on_an_open_model_page(page: Page, local_ui: LocalUI,
                                                console: Console) -> None:
    """A page left open follows channel moves made elsewhere (a gateway, the CLI)."""
    from modelvc.registry import Registry

    page.goto(local_ui.login_url)
    page.goto(local_ui.base + "/m/resnet")
    row = page.locator("#channels-live tr", has_text="staging")
    expect(row).to_contain_text("v2")
    expect(page.locator("#channels-live .as-of")).to_contain_text("UTC")
    with Registry.open(local_ui.registry) as reg:
        reg.rollback("resnet", "staging", to="resnet@v1", reason="elsewhere")
    expect(row.locator("td").nth(1)).to_have_text("v1", timeout=60_000)  # no reload
    # a rollback past the start of the history has no "previous"; v2, which staging
    # served, can still be picked
    expect(row.locator("select[name=to] option")).to_have_text(["v2"])
    assert console.errors == []


def test_a_deleted_version_shows_its_history(page: Page, local_ui: LocalUI,
                                             console: Console) -> None:
    """(Last in this module: it adds a model to the module's seeded registry.)"""
    from modelvc.registry import Registry

    repo = local_ui.registry
    with Registry.open(repo) as reg:
        f = repo.parent / "files" / "gone.bin"
        f.write_bytes(b"soon deleted")
        v = reg.commit(f, model="scratch", message="to delete")
        reg.create_branch("scratch", "keep", at=f"scratch@v{v.number}")
        f.write_bytes(b"kept")
        reg.commit(f, model="scratch", message="kept")
        reg.delete_ref("scratch", "keep")
        reg.delete(f"scratch@v{v.number}", reason="test")
    page.goto(local_ui.login_url)
    page.goto(local_ui.base + f"/m/scratch/v/{v.number}")
    expect(page.locator(".error[role=alert]")).to_contain_text("Deleted at")
    expect(page.locator("dl.facts")).to_contain_text("to delete")
    assert console.errors == []
