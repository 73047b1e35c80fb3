"""The web console in a real browser: Playwright driving Debian's Chromium against a real `weft serve` process.

One server and one browser for the module; each test opens its own pages. A
script the tests add to every page records, in sessionStorage, what the
console's own script changed after the page loaded (the run's state badge,
the diagram), so a test can tell a live update from a page the server drew.
Screenshots go to a temporary folder, or to $WEFT_SCREENSHOTS (e.g.
`WEFT_SCREENSHOTS=docs/console`) to refresh the README's.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from server_support import EXAMPLES, Server

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
HOSTILE = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=2;console.log(\'pwned\')">'
APPROVE = """
flow approve_change(ticket: int, urgent: bool = false, tags: list[str] = []) -> (by: str) {
    meta label "Change ${ticket}" tags ["change"]
    approval = wait approved(by: str, ticket?: int)
    std.log(message: "${approval.by} approved ${tags} (urgent: ${urgent})")
    return (by: approval.by)
}
"""
SUCCEEDED_FILL, FAILED_FILL = "#bbf7d0", "#fecaca"  # as the diagram colours steps

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

# Records what the console's script changes after load: badge texts and diagram redraws, across reloads.
RECORDER = """
window.addEventListener("DOMContentLoaded", () => {
  const note = (text) => {
    const seen = JSON.parse(sessionStorage.getItem("weft-seen") || "[]");
    seen.push(text);
    sessionStorage.setItem("weft-seen", JSON.stringify(seen));
  };
  new MutationObserver((changes) => {
    for (const c of changes) {
      const el = c.target.nodeType === 1 ? c.target : c.target.parentElement;
      if (el && el.closest("#run-state")) note("state:" + el.closest("#run-state").textContent.trim());
      if (el && el.id === "diagram" && c.attributeName === "data-state") note("diagram:" + el.dataset.state);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    (folder / "flows").mkdir()
    (folder / "flows" / "approve.flow").write_text(APPROVE)
    with Server(folder, flows=[EXAMPLES / "foreman", EXAMPLES / "bulk", folder / "flows"]) as s:
        s.fail_file = folder / "proxy" / "fail"
        s.fail_file.parent.mkdir(parents=True, exist_ok=True)
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return Path(os.environ.get("WEFT_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))


class Watch:
    """A page's dialogs, console lines and page errors: markup from a run must cause none of them."""

    def __init__(self, page):
        self.dialogs, self.console, self.errors = [], [], []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: self.console.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def clean(self, page) -> None:
        assert self.dialogs == [] and self.errors == [], (self.dialogs, self.errors)
        assert not any("pwned" in line or "Content Security Policy" in line for line in self.console), self.console
        for _ in range(3):  # the console may be loading the page again (a run that stopped)
            page.wait_for_load_state()
            try:
                assert page.evaluate("typeof window.__pwned") == "undefined"
                return
            except sync_api.Error:
                continue
        raise AssertionError("the page kept navigating")


@pytest.fixture(scope="module")
def context(server, browser):
    """A browser context signed in through the login page."""
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 900})
    ctx.add_init_script(RECORDER)
    page = ctx.new_page()
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns$"))
    page.fill("#token", "not-the-token-at-all")
    page.click("#login button[type=submit]")
    expect(page.locator("#login .problem")).to_contain_text("neither the operator's nor the viewer's")
    page.fill("#token", server.token)
    page.click("#login button[type=submit]")
    expect(page).to_have_url(f"{server.url}/runs")
    expect(page.locator(".who")).to_contain_text("operator")
    page.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    p = context.new_page()
    p.watch = Watch(p)
    yield p
    p.watch.clean(p)
    p.close()


def seen(page) -> list[str]:
    return json.loads(page.evaluate("sessionStorage.getItem('weft-seen') || '[]'"))


def host(n: int) -> dict:
    return {"name": f"console{n}", "mac": f"52:54:00:aa:00:{n:02x}", "subnet": "10.0.0.0/24"}


def start(server, inputs: dict, flow: str = "create_host", **extra) -> str:
    answer = server.api.post("/api/v1/runs", json={"flow": flow, "inputs": inputs, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_pages_need_a_session_and_carry_a_content_security_policy(server, context):
    plain = server.http(None)
    answer = plain.get("/runs?state=paused", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fruns%3Fstate%3Dpaused"
    page = context.new_page()
    response = page.goto("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    page.close()


def test_a_foreman_run_from_the_catalogue_pauses_live_shows_its_error_and_resumes(server, page, shots):
    # The first reservation fails (retried after 2 s, so the page sees the run going), then the PTR record fails.
    server.fail_file.write_text("dhcp_reserve:52:54:00:aa:00:01\ndns_create:PTR\n")
    page.goto("/flows")
    page.click("text=create_host")
    for name, value in host(1).items():
        page.fill(f"#param-{name}", value)
    page.fill("#start-user", "alice")
    page.click("[data-open=do-start]")
    expect(page.locator("#do-start [data-preview]")).to_contain_text('"mac": "52:54:00:aa:00:01"')
    page.click("#do-start button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/[0-9A-Z]{26}$"))
    run_id = page.url.rsplit("/", 1)[1]

    expect(page.locator("#run-state")).to_have_text("paused", timeout=20_000)
    assert "state:paused" in seen(page)  # the script turned the badge, before the page was drawn again
    expect(page.locator("tr[data-step=ptr] [data-step-state]")).to_have_text("failed")
    expect(page.locator("tr[data-step=a] [data-step-state]")).to_have_text("succeeded")
    page.screenshot(path=str(shots / "paused-run.png"))

    page.click("tr[data-step=ptr] a")
    expect(page.locator("#step-error")).to_contain_text("PTR")
    expect(page.locator("#step-traceback")).to_contain_text("Traceback")
    expect(page.locator("#step-inputs")).to_contain_text('"type": "PTR"')

    server.fail_file.unlink(missing_ok=True)  # the switch off: the next PTR call succeeds
    page.click("[data-open=do-resume]")
    expect(page.locator("#do-resume")).to_contain_text("The failed step ptr is tried again")
    page.click("#do-resume button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    diagram = page.locator("#diagram")
    expect(diagram).to_have_attribute("data-state", "succeeded")
    svg = page.request.get(server.url + diagram.get_attribute("src")).text()
    assert SUCCEEDED_FILL in svg.lower() and FAILED_FILL not in svg.lower()
    assert server.api.get(f"/api/v1/runs/{run_id}").json()["result"]["fqdn"] == "console1.example.com"


def test_skip_a_failed_step_with_outputs_typed_by_the_step(server, page):
    server.fail_file.write_text("dns_create:PTR\n")
    run_id = start(server, host(2))
    server.wait_for(run_id, ("paused",))
    page.goto(f"/runs/{run_id}")
    page.click("[data-open=do-skip-1]")
    dialog = page.locator("#do-skip-1")
    expect(dialog).to_contain_text("marked skipped with the outputs below")
    for name in ("name", "type", "value"):
        expect(dialog.locator(f"[data-field={name}]")).to_be_visible()
    page.fill("#skip-1-name", HOSTILE)
    page.fill("#skip-1-type", "PTR")
    page.fill("#skip-1-value", "console2.example.com")
    page.click("#do-skip-1 button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("tr[data-step=ptr] [data-step-state]")).to_have_text("skipped")
    page.click("tr[data-step=ptr] a")
    outputs = json.loads(page.locator("#step-outputs").text_content())
    assert outputs["name"] == HOSTILE
    assert page.locator("img[src=x]").count() == 0


def test_a_skip_with_a_bad_output_is_refused_in_the_dialog(server, page):
    server.fail_file.write_text("dns_create:PTR\n")
    run_id = start(server, host(3))
    server.wait_for(run_id, ("paused",))
    page.goto(f"/runs/{run_id}")
    page.click("[data-open=do-skip-1]")
    page.click("#do-skip-1 button[type=submit]")  # the required fields left empty
    expect(page.locator("#do-skip-1 .problem")).to_have_text("name: a value is needed")
    page.click("#do-skip-1 [data-close]")
    page.click("[data-open=do-cancel]")
    expect(page.locator("#do-cancel")).to_contain_text("ends cancelled and its lock (host:console3) is freed")
    page.click("#do-cancel button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("cancelled", timeout=20_000)


def test_the_page_of_a_paused_run_follows_a_resume_from_elsewhere(server, page):
    server.fail_file.write_text("dns_create:PTR\n")
    run_id = start(server, host(8))
    server.wait_for(run_id, ("paused",))
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("paused")
    assert server.api.post(f"/api/v1/runs/{run_id}/resume").status_code == 200  # as a program would
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#actions")).to_contain_text("Roll back")


def test_roll_back_a_run_listing_what_is_undone(server, page):
    run_id = start(server, host(4))
    server.wait_for(run_id, ("succeeded",))
    page.goto(f"/runs/{run_id}")
    page.click("[data-open=do-rollback]")
    undo = page.locator("#rollback-undo li")
    expect(undo).to_have_count(3)
    assert sorted(undo.all_text_contents()) == ["a", "dhcp", "ptr"]
    force = page.locator("#do-rollback [data-force]")
    if force.count():  # steps without an undo (the finalize log line): the rollback must be told to go past them
        force.check()
    page.click("#do-rollback button[type=submit]")
    for step in ("dhcp", "a", "ptr"):
        expect(page.locator(f"tr[data-step={step}] [data-step-state]")).to_have_text("undone", timeout=20_000)
    assert server.api.get(f"/api/v1/runs/{run_id}").json()["rolled_back"] is True


def test_rerun_a_succeeded_step_from_its_panel_refused_while_another_run_holds_the_lock(server, page):
    run_id = start(server, host(10))
    server.wait_for(run_id, ("succeeded",))
    server.fail_file.write_text("dns_create:PTR\n")
    holder = start(server, host(10))  # the same host again: it pauses holding lock host:console10
    server.wait_for(holder, ("paused",))
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#rerun-hint")).to_be_visible()
    page.click("tr[data-step=a] a")
    page.click("[data-open=do-rerun]")
    dialog = page.locator("#do-rerun")
    expect(dialog).to_contain_text("Step a (succeeded) goes back to pending")
    expect(dialog).to_contain_text("The run, succeeded now, runs again")
    dialog.locator("[data-dependents]").check()
    page.click("#do-rerun button[type=submit]")
    expect(dialog.locator(".problem")).to_contain_text(holder)  # the 409 names the lock's holder
    assert server.api.post(f"/api/v1/runs/{holder}/cancel").status_code == 200
    server.wait_for(holder, ("cancelled",))
    page.click("#do-rerun button[type=submit]")
    expect(page.locator("#history")).to_contain_text("re-run of a and the steps downstream, asked by the console")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    run = server.api.get(f"/api/v1/runs/{run_id}").json()
    runs_of = {s["id"]: s["attempts"] for s in run["steps"]}
    assert runs_of["a"] == 2 and runs_of["dhcp"] == 1, runs_of  # a ran again, what it follows did not
    page.click("tr[data-step=ptr] a")  # not downstream of a: its panel still offers a re-run
    expect(page.locator("[data-open=do-rerun]")).to_have_text("Rerun ptr")


def test_rerun_one_item_of_a_bulk_run_from_its_each_step(server, page):
    hosts = [{"name": f"item{n}", "mac": f"52:54:00:cc:00:{n:02x}"} for n in (1, 2)]
    run_id = start(server, {"hosts": hosts, "subnet": "10.8.0.0/24"}, flow="bulk_create")
    run = server.wait_for(run_id, ("succeeded",))
    each = next(s["id"] for s in run["steps"] if s["kind"] == "each")
    page.goto(f"/runs/{run_id}?step={each}#step")
    page.click("[data-open=do-rerun]")
    dialog = page.locator("#do-rerun")
    expect(dialog).to_contain_text("with an item, that item's sub-run runs again")
    page.fill("#rerun-item", "3")
    page.click("#do-rerun button[type=submit]")
    expect(dialog.locator(".problem")).to_contain_text("made no sub-run for item 3 (it made sub-runs for items 1 to 2)")
    page.fill("#rerun-item", "2")
    page.click("#do-rerun button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    children = server.api.get("/api/v1/runs", params={"parent": run_id, "sort": "label", "order": "asc"}).json()
    notes = {}
    for child in children["items"]:
        done = server.wait_for(child["id"], ("succeeded",))
        notes[done["label"]] = [e["note"] for e in done["history"] if e["note"] and "re-run" in e["note"]]
    assert notes == {"Create host item1": [], "Create host item2": [notes["Create host item2"][0]]}, notes
    assert "asked by the console (operator)" in notes["Create host item2"][0]


def test_a_running_run_offers_no_rerun(server, page):
    page.goto("/flows/approve_change")
    page.fill("#param-ticket", "8")
    page.click("[data-open=do-start]")
    page.click("#do-start button[type=submit]")
    expect(page.locator("[data-open=do-signal-1]")).to_be_visible(timeout=20_000)
    page.click("tr[data-step=approval] a")
    expect(page.locator("#step")).to_contain_text("Awaits signal")
    expect(page.locator("[data-open=do-rerun]")).to_have_count(0)
    expect(page.locator("#rerun-hint")).to_have_count(0)
    run_id = page.url.split("?")[0].rsplit("/", 1)[1]
    assert server.api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200


def test_markup_in_a_label_and_inputs_is_shown_as_text_and_never_runs(server, page):
    run_id = start(server, host(5), label=HOSTILE)
    server.wait_for(run_id, ("succeeded",))
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-label")).to_have_text(HOSTILE)
    page.goto("/runs?label=" + "pwned")
    expect(page.locator(f"tr[data-run='{run_id}'] td >> nth=1")).to_contain_text(HOSTILE)
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("[...document.scripts].every(s => s.src.endsWith('/static/console.js'))")


def test_a_bulk_run_of_100_from_the_catalogue_pages_through_its_sub_runs(server, page, shots):
    sys.path.insert(0, str(EXAMPLES / "bulk"))
    try:
        from make_inputs import make_inputs
    finally:
        sys.path.remove(str(EXAMPLES / "bulk"))
    inputs = make_inputs(100, subnet="10.9.0.0/24")
    page.goto("/flows/bulk_create")
    page.fill("#param-hosts", json.dumps(inputs["hosts"]))  # a list of records: a JSON field
    page.fill("#param-subnet", inputs["subnet"])
    page.click("[data-open=do-start]")
    page.click("#do-start button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#sub-info")).to_have_text("sub-runs 1–25 of 100")
    page.set_viewport_size({"width": 1360, "height": 1500})
    page.screenshot(path=str(shots / "bulk-run.png"))
    for first in (26, 51, 76):
        page.click("#sub-next")
        expect(page.locator("#sub-info")).to_have_text(f"sub-runs {first}–{first + 24} of 100")
    expect(page.locator("#sub-next")).to_have_count(0)
    page.click("#sub-prev")
    expect(page.locator("#sub-info")).to_have_text("sub-runs 51–75 of 100")
    labels = page.locator("#sub-runs tbody tr td:nth-child(2) a").all_text_contents()
    assert len(labels) == 25 and all(label.startswith("Create host web") for label in labels)

    # The runs list of its sub-runs: sorted by label, paged on the server, sorted the other way, filtered.
    page.click("#sub-list")
    rows = page.locator("table.runs tbody tr td:nth-child(2) a")
    expect(page.locator("#page-info")).to_have_text("runs 1–50 of 100")
    expect(rows.first).to_have_text("Create host web001")
    page.click("a[rel=next]")
    expect(page.locator("#page-info")).to_have_text("runs 51–100 of 100")
    expect(rows.last).to_have_text("Create host web100")
    page.click("a[data-sort=label]")
    expect(page.locator("#page-info")).to_have_text("runs 1–50 of 100")
    expect(rows.first).to_have_text("Create host web100")
    page.fill("input[name=label]", "WEB00")
    page.click(".filters button[type=submit]")
    expect(rows).to_have_count(9)
    assert rows.all_text_contents() == [f"Create host web00{n}" for n in range(9, 0, -1)]


def test_the_dashboard_counts_link_to_the_filtered_list_and_bulk_resume(server, page, shots):
    server.fail_file.write_text("dns_create:PTR\ndns_create:PTR\n")
    paused = [start(server, host(n)) for n in (6, 7)]
    for rid in paused:
        server.wait_for(rid, ("paused",))
    page.goto("/")
    count = page.locator("[data-count='12h.paused']")
    expect(count).to_have_text("2")
    page.screenshot(path=str(shots / "dashboard.png"))
    count.click()
    expect(page).to_have_url(re.compile(r"/runs\?state=paused&since=12h$"))
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    page.check("#select-all")
    expect(page.locator(".toolbar [data-selected-count]")).to_have_text("2")
    page.click("[data-open=bulk-resume]")
    page.click("#bulk-resume button[type=submit]")
    expect(page.locator("#bulk-resume .report")).to_contain_text("done: 2")
    for rid in paused:  # the list follows the runs live: each row turns succeeded
        expect(page.locator(f"tr[data-run='{rid}'] [data-state]")).to_have_text("succeeded", timeout=20_000)
    page.click("#bulk-resume [data-close]")
    expect(page.locator("table.runs tbody tr")).to_have_count(0)


def test_a_waiting_run_started_with_typed_inputs_gets_its_signal_from_a_form(server, page):
    page.goto("/flows/approve_change")
    page.fill("#param-ticket", "7")
    page.check("#param-urgent")
    page.fill("#param-tags", "[1]")
    page.click("[data-open=do-start]")
    expect(page.locator("#do-start [data-preview]")).to_contain_text('"urgent": true')
    page.click("#do-start button[type=submit]")
    expect(page.locator("#do-start .problem")).to_contain_text("tags[0]")  # the server's 422, in the dialog
    page.click("#do-start [data-close]")
    page.fill("#param-tags", '["db", "eu"]')
    page.click("[data-open=do-start]")
    page.click("#do-start button[type=submit]")
    page.click("[data-open=do-signal-1]", timeout=20_000)  # offered once the page sees the step waiting
    dialog = page.locator("#do-signal-1")
    expect(dialog).to_contain_text("waits for signal approved")
    expect(dialog.locator("[data-field=ticket]")).to_have_attribute("data-empty", "omit")
    page.fill("#signal-1-by", HOSTILE)  # it reaches the result and a log line, shown live and on the page
    page.fill("#signal-1-ticket", "7")
    page.click("#do-signal-1 button[type=submit]")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#history")).to_contain_text(f'{HOSTILE} approved ["db", "eu"] (urgent: true)')
    run_id = page.url.rsplit("/", 1)[1]
    run = server.api.get(f"/api/v1/runs/{run_id}").json()
    assert run["result"] == {"by": HOSTILE} and run["inputs"]["tags"] == ["db", "eu"] and run["label"] == "Change 7"


def test_the_viewer_sees_runs_but_no_actions(server, browser):
    ctx = browser.new_context(base_url=server.url)
    page = ctx.new_page()
    page.goto("/login")
    page.fill("#token", server.viewer_token)
    page.click("#login button[type=submit]")
    expect(page.locator(".who")).to_contain_text("viewer (read only)")
    page.goto("/runs")
    expect(page.locator("[data-open=bulk-resume]")).to_have_count(0)
    run_id = page.locator("table.runs tbody tr").first.get_attribute("data-run")
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#actions")).to_contain_text("The viewer token reads only")
    page.click("#sign-out")
    expect(page).to_have_url(f"{server.url}/login")
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    ctx.close()


def test_the_schedules_page_shows_next_slots_and_recent_runs_and_pauses_resumes_and_triggers(server, page):
    inputs = {"name": "sched1", "mac": "52:54:00:bb:00:01", "subnet": "10.0.0.0/24"}
    body = {"name": "nightly-web", "flow": "create_host", "inputs": inputs, "cron": "0 3 * * *", "tz": "Europe/Prague"}
    assert server.api.post("/api/v1/schedules", json=body).status_code == 201
    page.goto("/schedules")
    card = page.locator("#schedule-nightly-web")
    expect(card.locator("[data-upcoming]")).to_contain_text(" 02:00:00")  # 03:00 in Prague is 02:00 UTC in winter
    card.get_by_role("button", name="Pause").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("input[data-field=note]").fill(HOSTILE)
    dialog.get_by_role("button", name="Pause").click()
    expect(card.locator("h2 .badge")).to_have_text("paused")
    expect(card.locator("[data-upcoming]")).to_contain_text(HOSTILE)  # the note, as text
    card.get_by_role("button", name="Resume").click()
    page.locator("dialog[open]").get_by_role("button", name="Resume").click()
    expect(card.locator("h2 .badge")).to_have_count(0)
    card.get_by_role("button", name="Trigger now").click()
    page.locator("dialog[open]").get_by_role("button", name="Start").click()
    expect(card.locator("tr[data-run]")).to_have_count(1)
    run = server.wait_for(card.locator("tr[data-run]").get_attribute("data-run"), ("succeeded",))
    assert run["schedule"]["name"] == "nightly-web"
    page.goto(f"/runs/{run['id']}")
    expect(page.locator("table.facts")).to_contain_text("nightly-web, slot")
    page.watch.clean(page)
