"""A run of 1,000 steps over a real `weft serve`: GET /api/v1/runs/ID pages its steps as `weft show` does, and
the console's run page shows the first page, the counts by state and a "show more" that loads the next."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from server_support import Server

pytestmark = pytest.mark.slow

N = 999  # echo steps beside the wait step
ECHOES = "".join(f"    s{i} = std.echo(value: {i})\n" for i in range(N))
BIG = "flow big() {\n    ask = wait go(ok: bool)\n" + ECHOES + "}\n\nflow done() {\n" + ECHOES + "}\n"
CHROMIUM = "/usr/bin/chromium"
# Records, across reloads, the states the console's script gave step `ask`'s badge after the page was drawn.
RECORDER = """
window.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((changes) => {
    for (const c of changes) {
      const el = c.target.nodeType === 1 ? c.target : c.target.parentElement;
      const badge = el && el.closest("tr[data-step=ask] [data-step-state]");
      if (!badge) continue;
      const seen = JSON.parse(sessionStorage.getItem("ask") || "[]");
      seen.push(badge.textContent.trim());
      sessionStorage.setItem("ask", JSON.stringify(seen));
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
});
"""
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    (folder / "flows").mkdir()
    (folder / "flows" / "big.flow").write_text(BIG)
    with Server(folder, flows=[folder / "flows"]) as s:
        yield s


@pytest.fixture(scope="module")
def big(server) -> str:
    """A run of the 1,000-step flow, its echo steps done and its wait step suspended."""
    answer = server.api.post("/api/v1/runs", json={"flow": "big"})
    assert answer.status_code == 201, answer.text
    rid = answer.json()["id"]
    for _ in range(600):
        counts = server.api.get(f"/api/v1/runs/{rid}", params={"steps": 0}).json()["counts"]
        if counts == {"run": {"succeeded": N, "suspended": 1}}:
            return rid
        time.sleep(0.05)
    raise AssertionError(counts)


def _ids(page: dict) -> list[str]:
    return [s["id"] for s in page["steps"]]


def test_a_big_run_comes_in_pages_of_steps_in_weft_show_s_order_with_its_totals(server, big):
    first = server.api.get(f"/api/v1/runs/{big}").json()
    assert (first["steps_total"], len(first["steps"]), first["steps_offset"]) == (N + 1, 200, 0)
    assert first["counts"] == {"run": {"succeeded": N, "suspended": 1}}
    assert _ids(first) == ["ask"] + [f"s{i}" for i in range(199)]  # suspended first, then plan order
    pages = [
        server.api.get(f"/api/v1/runs/{big}", params={"steps": 300, "offset": at}).json() for at in range(0, 1200, 300)
    ]
    assert [p["steps_offset"] for p in pages] == [0, 300, 600, 900]
    assert [len(p["steps"]) for p in pages] == [300, 300, 300, 100]
    assert sum((_ids(p) for p in pages), []) == ["ask"] + [f"s{i}" for i in range(N)]
    assert all(p["steps_total"] == N + 1 and p["counts"] == first["counts"] for p in pages)
    shown = subprocess.run(
        [sys.executable, "-m", "weft.cli", "show", big, "--steps", "300", "--json"],
        env=dict(os.environ, WEFT_STORE=server.store),
        capture_output=True,
        text=True,
        check=True,
    )
    assert [s["id"] for s in json.loads(shown.stdout)["steps"]] == _ids(pages[0])
    every = server.api.get(f"/api/v1/runs/{big}", params={"steps": "all", "history": 5}).json()
    assert _ids(every) == ["ask"] + [f"s{i}" for i in range(N)] and len(every["history"]) == 5
    assert every["history_total"] == every["history"][-1]["seq"] > 2 * N
    past = server.api.get(f"/api/v1/runs/{big}", params={"offset": 5000}).json()
    assert (past["steps"], past["steps_total"], past["steps_offset"]) == ([], N + 1, 5000)


def test_an_ended_big_run_s_pages_come_from_its_tally_in_plan_order(server):
    rid = server.api.post("/api/v1/runs", json={"flow": "done"}).json()["id"]
    server.wait_for(rid, ("succeeded",))
    pages = [server.api.get(f"/api/v1/runs/{rid}", params={"steps": 400, "offset": at}).json() for at in (0, 400, 800)]
    assert sum((_ids(p) for p in pages), []) == [f"s{i}" for i in range(N)]
    assert all(p["counts"] == {"run": {"succeeded": N}} and p["steps_total"] == N for p in pages)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"steps": "-1"}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"steps": "1.5"}, "steps"),
        ({"steps": "9" * 13}, "steps"),
        ({"steps": "1000001"}, "steps"),  # past the largest page the schema allows
        ({"offset": "-1"}, "offset"),
        ({"offset": "first"}, "offset"),
        ({"history": "some"}, "history"),
    ],
)
def test_a_bad_page_of_steps_is_a_problem_naming_its_field(server, big, params, field):
    answer = server.api.get(f"/api/v1/runs/{big}", params=params)
    assert answer.status_code == 422 and answer.headers["content-type"].startswith(PROBLEM), answer.text
    assert answer.json()["field"] == field and "Traceback" not in answer.text


def test_the_openapi_schema_documents_the_page_of_steps(server):
    operation = server.api.get("/api/v1/openapi.json").json()["paths"]["/api/v1/runs/{run_id}"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["steps"]["schema"]["default"] == "200" and params["steps"]["schema"]["pattern"] == "^(0*1000000|0*[0-9]{1,6}|all)$"
    assert "weft show" in params["steps"]["description"] and params["offset"]["schema"]["minimum"] == 0
    page = server.api.get("/api/v1/openapi.json").json()["components"]["schemas"]["RunPage"]["properties"]
    assert {"steps_total", "steps_offset", "counts", "history_total"} <= set(page)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_console_shows_a_big_run_s_first_page_its_counts_and_more_on_asking_and_follows_it_live(server, big):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    rows = "table.steps tbody tr"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True)
        page = browser.new_page(base_url=server.url)
        page.add_init_script(RECORDER)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"/login?next=/runs/{big}")
        page.fill("#token", server.token)
        page.click("#login button[type=submit]")
        expect(page).to_have_url(f"{server.url}/runs/{big}")
        expect(page.locator("#steps-shown")).to_contain_text(f"Showing 200 of {N + 1} steps")
        expect(page.locator("#step-counts")).to_contain_text(f"succeeded {N}")
        expect(page.locator(rows)).to_have_count(200)
        assert page.locator(rows).first.get_attribute("data-step") == "ask"
        expect(page.locator("tr[data-step=s250]")).to_have_count(0)

        page.click("#steps-more")
        expect(page).to_have_url(re.compile(r"steps=400#steps-page$"))
        expect(page.locator(rows)).to_have_count(400)
        expect(page.locator("tr[data-step=s250] [data-step-state]")).to_have_text("succeeded")
        expect(page.locator("#steps-shown")).to_contain_text(f"Showing 400 of {N + 1} steps")

        expect(page.locator("#live")).to_be_visible()  # the stream follows the run, paged or not
        signalled = server.api.post(f"/api/v1/runs/{big}/signals/go", json={"ok": True})
        assert signalled.status_code == 200, signalled.text
        expect(page.locator("tr[data-step=ask] [data-step-state]")).to_have_text("succeeded", timeout=20_000)
        expect(page.locator("#run-state")).to_have_text("succeeded", timeout=20_000)
        expect(page).to_have_url(re.compile(r"steps=400"))  # drawn again once it ended, with as many steps
        assert "succeeded" in json.loads(page.evaluate("sessionStorage.getItem('ask') || '[]'"))  # turned live
        assert errors == []
        browser.close()
