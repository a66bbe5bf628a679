"""Actions on `modelvc server`'s /ui: gated, role-checked and CSRF-protected like the API."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from modelvc.registry import Registry
from tests.services.server import ServerProcess

from .conftest import Console, login, roll_back, shot
from .seed import Seeded


def _state(seeded: Seeded) -> tuple[int | None, int, int]:
    """(bert@production's number, moves of bert, audit entries): what must not change."""
    with Registry.open(seeded.path) as reg:
        prod = reg.refs("bert", kind="channel")
        ids = {v.id: v.number for v in reg.versions("bert")}
        at = next((ids[r.version_id] for r in prod
                   if r.name == "production" and r.version_id), None)
        return at, len(reg.history("bert")), len(reg.audit())


def test_promote_refused_by_a_gate_shows_why_and_moves_nothing(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    before = _state(seeded)
    login(page, server, seeded.tokens["maint"])
    page.goto(server.url + "/ui/m/bert/v/3")
    # Before the click, the page already says what the registry will answer, and why.
    preview = page.locator("table.preview tr", has_text="production")
    expect(preview).to_contain_text("metric: acc >= 0.84")
    expect(preview).to_contain_text("refused: failed the production gates")
    expect(preview).to_contain_text("(measured 0.83)")
    expect(preview).to_contain_text("admin, maint")
    runs = page.locator("table.runs tbody tr")
    expect(runs.first).to_contain_text("failed")
    page.click("summary >> text=Evidence of run")
    evidence = page.locator("details.report[open] table")
    expect(evidence).to_contain_text("FAIL")
    expect(evidence).to_contain_text("0.83")  # measured
    page.fill("#p-channel", "production")
    page.fill("#p-reason", "ship it")
    page.click("text=Promote v3")
    alert = page.locator(".error[role=alert]")
    expect(alert).to_contain_text("bert@v3")
    expect(alert).to_contain_text("failed the production gates")
    expect(alert).to_contain_text("acc >= 0.84 (measured 0.83)")  # the gate, what it saw
    expect(alert).to_contain_text("Nothing was changed")
    shot(page, "promote-refused")
    page.click("text=Back to the page you came from")  # not a dead end
    expect(page.locator("h1")).to_contain_text("bert@v3")
    assert _state(seeded) == before
    # Chromium logs the refusal's 409 status; nothing else may be logged.
    assert [e for e in console.errors if "409" not in e or "/ui/act/promote" not in e] == []


def test_rollback_by_a_maintainer_shows_in_timeline_and_audit(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    at_before, moves_before, _ = _state(seeded)
    login(page, server, seeded.tokens["maint"])
    asked: list[str] = []
    page.on("dialog", lambda d: asked.append(d.message))  # (console accepts it)
    roll_back(page, server, "bert", "production", "latency regression in v2")
    expect(page.locator(".notice[role=status]")).to_contain_text(
        "rolled back production from v2 to v1")
    # the confirmation said where the channel would go before anything moved
    assert asked == ["Roll back production from v2 to v1 (previous)?"]
    first = page.locator("section[aria-labelledby=timeline] tbody tr").first
    expect(first).to_contain_text("rollback")
    expect(first).to_contain_text("maint")
    expect(first).to_contain_text("latency regression in v2")
    at_after, moves_after, _ = _state(seeded)
    assert (at_before, at_after, moves_after) == (2, 1, moves_before + 1)

    page.click("text=Audit trail of bert")
    entry = page.locator("table.audit tbody tr").first
    expect(entry).to_contain_text("rollback")
    expect(entry).to_contain_text("maint")
    expect(entry).to_contain_text("bert@production")
    expect(entry).to_contain_text("latency regression in v2")
    # before and after name the versions (links), not a cut-off JSON id
    before, after = entry.locator("td.audit-value").all()
    expect(before.locator("a")).to_have_text("v2")
    expect(after.locator("a")).to_have_text("v1")
    after.locator("summary").click()
    expect(after.locator("code")).to_contain_text('"kind": "channel"')
    assert console.errors == []


def test_gates_run_from_the_version_page_are_recorded(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    login(page, server, seeded.tokens["admin"])
    held = _state(seeded)[0]  # (other tests of this module move production)
    page.goto(server.url + f"/ui/m/bert/v/{held}")
    # the version production holds: the preview says so instead of "refused"
    expect(page.locator("table.preview tr", has_text="production")).to_contain_text(
        f"production holds v{held} now")
    page.goto(server.url + "/ui/m/bert/v/3")
    with Registry.open(seeded.path) as reg:
        runs = len(reg.gates.runs("bert@v3"))
    page.click("text=Run production gates")
    expect(page.locator(".notice[role=status]")).to_contain_text(
        "v3 failed the production gates (run")
    latest = page.locator("table.runs tbody tr").first
    expect(latest).to_contain_text("admin")
    expect(latest).to_contain_text("acc >= 0.84 (measured 0.83)")
    with Registry.open(seeded.path) as reg:
        assert len(reg.gates.runs("bert@v3")) == runs + 1
        assert reg.audit(action="gate")[-1].actor == "admin"
    assert console.errors == []


def test_a_done_notice_shows_only_when_an_action_made_it(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    login(page, server, seeded.tokens["maint"])
    page.goto(server.url + "/ui/m/bert?done=production+rolled+back+by+admin")
    expect(page.locator("h1")).to_have_text("bert")
    expect(page.locator(".notice[role=status]")).to_have_count(0)  # a forged link
    page.goto(server.url + "/ui/m/bert/v/2")
    page.fill("#t-name", "notice-check")
    page.click("text=Tag v2")
    expect(page.locator(".notice[role=status]")).to_have_text("Done: tagged notice-check.")
    forged = page.url.replace("notice-check", "something-else")
    page.goto(forged)
    expect(page.locator(".notice[role=status]")).to_have_count(0)
    assert console.errors == []


def test_reader_sees_no_actions_and_a_forged_post_is_refused(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    login(page, server, seeded.tokens["reader"])
    page.goto(server.url + "/ui/m/bert/v/2")
    expect(page.locator("h1")).to_contain_text("bert@v2")
    expect(page.locator("form.act")).to_have_count(0)
    expect(page.locator("section.actions")).to_have_count(0)
    page.goto(server.url + "/ui/m/bert")
    expect(page.locator("form.act")).to_have_count(0)
    expect(page.locator("button", has_text="Roll back")).to_have_count(0)
    # the whole trail is for admins: no link to a page that would refuse a reader
    expect(page.locator("nav[aria-label=Main] a", has_text="Audit")).to_have_count(0)

    before = _state(seeded)
    csrf = page.locator("form[action$='/logout'] input[name=_csrf]").get_attribute("value")
    assert csrf  # a valid CSRF token of the reader's own session: roles still refuse
    for path, form in (("rollback", {"model": "bert", "channel": "production",
                                     "reason": "forged"}),
                       ("promote", {"model": "bert", "number": "3", "channel": "staging"}),
                       ("tag", {"model": "bert", "number": "1", "name": "forged"}),
                       ("gates", {"model": "bert", "number": "3", "channel": "production"})):
        resp = page.request.post(f"{server.url}/ui/act/{path}", form={**form, "_csrf": csrf},
                                 max_redirects=0)
        assert resp.status == 403, (path, resp.status, resp.text()[:500])
        assert "needs the" in resp.text()
    assert _state(seeded) == before
    assert console.errors == []


def test_a_post_without_the_csrf_token_is_refused(
        page: Page, server: ServerProcess, seeded: Seeded) -> None:
    login(page, server, seeded.tokens["admin"])
    expect(page.locator("nav[aria-label=Main] a", has_text="Audit")).to_have_count(1)
    before = _state(seeded)
    for extra in ({}, {"_csrf": "0" * 64}):
        resp = page.request.post(f"{server.url}/ui/act/tag", max_redirects=0, form={
            "model": "bert", "number": "1", "name": "no-csrf", **extra})
        assert resp.status == 403
        assert "CSRF" in resp.text()
    csrf = page.locator("form[action$='/logout'] input[name=_csrf]").get_attribute("value")
    resp = page.request.post(f"{server.url}/ui/act/tag", max_redirects=0, form={
        "model": "bert", "number": "1", "name": "huge", "_csrf": csrf or "",
        "pad": "x" * (1 << 20)})
    assert resp.status == 400 and "larger than 64 KB" in resp.text()
    assert _state(seeded) == before
    with Registry.open(seeded.path) as reg:
        assert {"no-csrf", "huge"}.isdisjoint(r.name for r in reg.refs("bert", kind="tag"))


def test_promote_tag_and_branch_by_a_maintainer(
        page: Page, server: ServerProcess, seeded: Seeded, console: Console) -> None:
    login(page, server, seeded.tokens["maint"])
    page.goto(server.url + "/ui/m/resnet/v/1")
    page.fill("#p-channel", "staging")
    page.fill("#p-reason", "compare with v2")
    page.click("text=Promote v1")
    expect(page.locator(".notice[role=status]")).to_contain_text("promoted v1 to staging")
    row = page.locator("section[aria-labelledby=timeline] tbody tr").first
    expect(row).to_contain_text("compare with v2")
    expect(row).to_contain_text("maint")

    page.goto(server.url + "/ui/m/resnet/v/2")
    page.fill("#t-name", "candidate")
    page.click("text=Tag v2")
    expect(page.locator(".notice[role=status]")).to_contain_text("tagged candidate")
    expect(page.locator("h1")).to_contain_text("candidate")
    page.fill("#b-name", "hotfix")
    page.click("text=Branch at v2")
    expect(page.locator("h1")).to_contain_text("hotfix")
    with Registry.open(seeded.path) as reg:
        refs = {r.name: (r.kind, r.version_id) for r in reg.refs("resnet")}
        v1, v2 = reg.resolve("resnet@v1").id, reg.resolve("resnet@v2").id
        assert refs["staging"] == ("channel", v1)
        assert refs["candidate"] == ("tag", v2)
        assert refs["hotfix"] == ("branch", v2)
        audited = {(e.action, e.target, e.actor) for e in reg.audit(model="resnet")}
    assert {("promote", "resnet@staging", "maint"), ("tag", "resnet@candidate", "maint"),
            ("create", "resnet@hotfix", "maint")} <= audited
    assert console.errors == []


def test_logout_and_a_revoked_token_end_the_session(
        page: Page, server: ServerProcess, seeded: Seeded) -> None:
    with Registry.open(seeded.path) as reg:
        secret, tok = reg.tokens.create("ui-session", subject="reader", actor="admin")
    login(page, server, secret)
    page.goto(server.url + "/ui/m/bert")
    expect(page.locator("h1")).to_have_text("bert")
    # The cookie names the token by its hash, never the token itself, under a MAC:
    # one with a later expiry written in is refused.
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelvc_ui")
    assert secret not in cookie["value"] and cookie["httpOnly"]
    token_hash, expires, nonce, mac = cookie["value"].split(".")
    page.context.add_cookies([{**cookie, "value": f"{token_hash}.{int(expires) + 10**6}"
                                                  f".{nonce}.{mac}"}])  # type: ignore[typeddict-item]
    page.goto(server.url + "/ui/m/bert")
    expect(page.locator("h1")).to_have_text("Log in")
    page.context.add_cookies([cookie])  # type: ignore[list-item]
    page.goto(server.url + "/ui/m/bert")
    expect(page.locator("h1")).to_have_text("bert")
    with Registry.open(seeded.path) as reg:
        reg.tokens.revoke(tok.id, actor="admin")
    page.goto(server.url + "/ui/m/bert")  # the next click: back to the login form
    expect(page.locator("h1")).to_have_text("Log in")

    login(page, server, seeded.tokens["reader"])
    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Log in")
    page.goto(server.url + "/ui/")
    expect(page.locator("h1")).to_have_text("Log in")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not valid")


def test_anonymous_read_shows_pages_and_refuses_actions(
        page: Page, seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> None:
    s = ServerProcess(seeded.path, tmp_path_factory.mktemp("anon") / "server.log",
               args=["--anonymous-read"]).start()
    try:
        page.context.clear_cookies()
        page.goto(s.url + "/ui/m/bert/v/2")
        expect(page.locator("h1")).to_contain_text("bert@v2")
        expect(page.locator("form.act")).to_have_count(0)
        expect(page.locator("header")).to_contain_text("Log in")
        before = _state(seeded)
        resp = page.request.post(f"{s.url}/ui/act/tag", max_redirects=0, form={
            "model": "bert", "number": "1", "name": "anon", "_csrf": "x"})
        assert resp.status in (401, 403)
        assert _state(seeded) == before
        page.goto(s.url + "/ui/nope")
        expect(page.locator(".error[role=alert]")).to_contain_text("no page /ui/nope")
    finally:
        s.stop()
