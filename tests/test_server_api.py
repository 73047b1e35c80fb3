"""The REST API of a real `weft serve` process over HTTP (issue 10): every endpoint and every error status,
tokens and sessions, bulk commands, paging that agrees with `weft list`, the catalogue and the store's modes."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Output, Weft
from server_support import EXAMPLES, Server

pytestmark = pytest.mark.slow

STEER = """
flow waiter(who: str = "x") {
    meta label "wait for ${who}" tags ["steer"]
    lock "host:${who}"
    ask = wait approval(ok: bool, note?: str) timeout 1h
}

flow breaks(n: int = 1) -> (y: int) {
    meta label "breaks ${n}" tags ["steer"]
    a = std.fail(message: "boom ${n}")
    b = std.echo(value: n) after a
    return (y: n)
}

flow quick(n: int = 1) -> (y: int) {
    meta tags ["steer", "quick"]
    a = std.log(message: "one ${n}")
    b = std.echo(value: n) after a
    return (y: n)
}
"""
PROBLEM = "application/problem+json"
FOREMAN = {"name": "web1", "mac": "52:54:00:00:00:01", "subnet": "10.0.0.0/24"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    for name in ("flows", "live"):
        (folder / name).mkdir()
    (folder / "flows" / "steer.flow").write_text(STEER)
    flows = [folder / "flows", folder / "live", EXAMPLES / "foreman", EXAMPLES / "bulk"]
    with Server(folder, flows=flows) as s:
        yield s


def problem(response: httpx.Response, status: int) -> dict:
    """The problem answer of `response`, which has `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    assert "Traceback" not in response.text
    return body


def start(server: Server, flow: str, **fields) -> str:
    """POST /api/v1/runs: the new run's id."""
    response = server.api.post("/api/v1/runs", json={"flow": flow, **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/runs/{response.json()['id']}"
    return response.json()["id"]


def settled(server: Server, rid: str) -> dict:
    return server.wait_for(rid, ("paused", "succeeded", "failed", "cancelled"))


def waiting(server: Server, rid: str) -> dict:
    """The run once its step waits for a signal."""
    end = time.monotonic() + 30
    while True:
        run = server.api.get(f"/api/v1/runs/{rid}").json()
        if run["waiting_for"] or time.monotonic() > end:
            assert run["waiting_for"], run
            return run
        time.sleep(0.05)


def fail_next(server: Server, *calls: str) -> None:
    """Make the simulated proxy's next matching calls fail (examples/foreman/proxy.py)."""
    folder = Path(server.env["WEFT_PROXY_STATE"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "fail", "a") as f:
        f.writelines(c + "\n" for c in calls)


# -- tokens, roles and sessions ------------------------------------------------------------------


def operations(server: Server, rid: str) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document but sign-in and sign-out, its parameters filled in."""
    paths = server.anonymous.get("/api/v1/openapi.json").json()["paths"]
    found = []
    for path, methods in paths.items():
        if path.startswith("/api/v1/session"):
            continue
        prefixes = {"/api/v1/flows/": "quick", "/api/v1/schedules/": "nightly"}  # a flow, a schedule, a signal
        name = next((n for p, n in prefixes.items() if path.startswith(p)), "approval")
        filled = path.format(run_id=rid, step="a", name=name)
        found += [(method.upper(), filled) for method in methods]
    return found


def test_every_operation_takes_a_token_and_every_change_the_operators(server):
    rid = start(server, "quick")
    settled(server, rid)
    nightly = {"name": "nightly", "flow": "quick", "cron": "0 3 * * *"}
    assert server.api.post("/api/v1/schedules", json=nightly).status_code in (201, 409)
    wrong = server.http("x" * 43)
    ops = operations(server, rid)
    assert len(ops) >= 20 and {m for m, _ in ops} == {"GET", "POST"}
    for method, path in ops:
        body = {} if method == "POST" else None
        for client in (server.anonymous, wrong):
            refused = client.request(method, path, json=body)
            problem(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer"), path
        if method == "POST":
            assert "viewer" in problem(server.viewer.request(method, path, json=body), 403)["detail"]
        elif path != "/api/v1/events" and not path.endswith("/stream"):  # the streams: test_server_stream.py
            assert server.viewer.get(path).status_code == 200, path
    problem(server.anonymous.get("/api/v1/runs", headers={"Authorization": "Basic abc"}), 401)
    wrong.close()


def test_session_cookie_login_csrf_and_logout(server):
    rid = start(server, "quick")
    settled(server, rid)
    with server.http(None) as browser:
        problem(browser.post("/api/v1/session", json={"token": "not-a-token-at-all"}), 401)
        signed = browser.post("/api/v1/session", json={"token": server.token})
        assert signed.status_code == 200 and signed.json() == {"role": "operator"}
        cookies = {c.split("=", 1)[0]: c.lower() for c in signed.headers.get_list("set-cookie")}
        assert "httponly" in cookies["weft_session"] and "samesite=strict" in cookies["weft_session"]
        assert "samesite=strict" in cookies["weft_csrf"] and "httponly" not in cookies["weft_csrf"]
        assert browser.get(f"/api/v1/runs/{rid}").status_code == 200
        refused = problem(browser.post(f"/api/v1/runs/{rid}/resume"), 403)
        assert "X-CSRF-Token" in refused["detail"]
        problem(browser.post(f"/api/v1/runs/{rid}/resume", headers={"X-CSRF-Token": "0" * 64}), 403)
        csrf = {"X-CSRF-Token": browser.cookies["weft_csrf"]}
        assert problem(browser.post(f"/api/v1/runs/{rid}/resume", headers=csrf), 409)["state"] == "succeeded"
        assert browser.post("/api/v1/session/end").status_code == 204
        browser.cookies.clear()  # what the deleting Set-Cookie headers tell a browser
        problem(browser.get(f"/api/v1/runs/{rid}"), 401)
        with server.http(None) as forger:
            forger.cookies.set("weft_session", f"operator.{int(time.time())}.{'0' * 64}")
            assert "ended" in problem(forger.get("/api/v1/runs"), 401)["detail"]
        for forged in ("operator.1.\xe9", "operator.\xb2.0", "operator.1.\xe9" * 500):  # each a 500 before
            with server.http(None) as forger:
                cookie = {"Cookie": f"weft_session={forged}".encode("latin-1")}
                problem(forger.get("/api/v1/runs", headers=cookie), 401)
                assert forger.get("/runs", headers=cookie).status_code in (303, 401)
        assert browser.post("/api/v1/session", json={"token": server.viewer_token}).json() == {"role": "viewer"}
        csrf = {"X-CSRF-Token": browser.cookies["weft_csrf"]}
        problem(browser.post(f"/api/v1/runs/{rid}/resume", headers=csrf), 403)
        assert browser.get("/api/v1/locks").status_code == 200


def test_token_files_and_store_folder_are_the_owners_only(server):
    for name in ("server-token", "viewer-token"):
        path = Path(server.store) / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == (server.token if name == "server-token" else server.viewer_token)
    assert stat.S_IMODE(os.stat(server.store).st_mode) & 0o077 == 0


def test_a_non_loopback_host_without_a_token_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WEFT_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "weft.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "0.0.0.0" in done.stderr and "--token" in done.stderr


# -- starting runs and their pages --------------------------------------------------------------------


def test_start_refuses_bad_bodies_naming_the_field(server):
    post = server.api.post
    assert "no flow" in problem(post("/api/v1/runs", json={"flow": "nope"}), 404)["detail"]
    assert problem(post("/api/v1/runs", json={"flow": "breaks", "inputs": {"n": "x"}}), 422)["field"] == "inputs.n"
    assert problem(post("/api/v1/runs", json={"flow": "breaks", "inputs": {"zz": 1}}), 422)["field"] == "inputs.zz"
    missing = problem(post("/api/v1/runs", json={"flow": "create_host", "inputs": {"name": "a"}}), 422)
    assert missing["field"] == "inputs.mac" and len(missing["problems"]) == 2, missing
    assert problem(post("/api/v1/runs", json={"flow": "quick", "bogus": 1}), 422)["field"] == "bogus"
    assert problem(post("/api/v1/runs", json={"flow": "quick", "inputs": []}), 422)["field"] == "inputs"
    assert problem(post("/api/v1/runs", json={"flow": "quick", "user": "u" * 201}), 422)["field"] == "user"
    assert problem(post("/api/v1/runs", json={"inputs": {}}), 422)["field"] == "flow"
    assert problem(post("/api/v1/runs", json={"flow": "quick", "at": "1969-12-31T23:00:00Z"}), 422)["field"] == "at"
    assert (
        "JSON"
        in problem(post("/api/v1/runs", content=b"{no", headers={"content-type": "application/json"}), 400)["detail"]
    )
    assert server.api.get("/api/v1/runs", params={"flow": "breaks"}).json()["total"] == 0


def test_a_held_lock_is_a_conflict_naming_its_holder(server):
    holder = start(server, "waiter", inputs={"who": "locked"}, label="the holder")
    waiting(server, holder)
    refused = problem(server.api.post("/api/v1/runs", json={"flow": "waiter", "inputs": {"who": "locked"}}), 409)
    assert holder in refused["detail"] and "host:locked" in refused["detail"]
    locks = server.api.get("/api/v1/locks").json()
    assert [(lock["name"], lock["run"]["id"]) for lock in locks if lock["name"] == "host:locked"] == [
        ("host:locked", holder)
    ]
    assert server.api.post(f"/api/v1/runs/{holder}/cancel").json()["run_id"] == holder
    settled(server, holder)
    assert "host:locked" not in [lock["name"] for lock in server.api.get("/api/v1/locks").json()]


def test_run_page_actions_commands_and_id_prefixes(server):
    quick = start(server, "quick")
    rid = start(server, "breaks", inputs={"n": 7}, user="pager", label="page <b>me</b>")
    run = settled(server, rid)
    assert run["state"] == "paused" and run["label"] == "page <b>me</b>" and run["user"] == "pager"
    assert run["actions"] == ["cancel", "rerun", "resume", "rollback", "skip"] == sorted(run["commands"])
    assert shlex.split(run["commands"]["resume"]) == ["weft", "resume", rid, "--store", server.store]
    assert shlex.split(run["commands"]["skip"])[:4] == ["weft", "skip", rid, "a"]
    assert [s["id"] for s in run["steps"]] == ["a", "b"] and run["steps"][0]["state"] == "failed"
    assert [e["seq"] for e in run["history"]] == list(range(1, len(run["history"]) + 1))
    assert server.api.get(f"/api/v1/runs/{rid[:20]}").json()["id"] == rid
    assert server.api.get(f"/api/v1/runs/{rid.lower()[:22]}").json()["id"] == rid
    assert "no run" in problem(server.api.get("/api/v1/runs/ZZZZZZZZ"), 404)["detail"]
    problem(server.api.get("/api/v1/runs/%20%00"), 404)
    ambiguous = problem(server.api.get("/api/v1/runs/0"), 404)  # every id of this century starts with 0
    assert "ambiguous" in ambiguous["detail"]
    shown = Weft(server.folder).cli_show(rid)  # the CLI reads the same run
    assert (shown["id"], shown["state"]) == (rid, "paused")
    assert settled(server, quick)["actions"] == ["rerun", "rollback"]  # sorted, in every process


def test_step_detail_has_the_error_and_traceback_of_a_failed_step(server):
    rid = start(server, "breaks", inputs={"n": 3})
    settled(server, rid)
    detail = server.api.get(f"/api/v1/runs/{rid}/steps/a").json()
    step = detail["step"]
    assert detail["run_id"] == rid and step["state"] == "failed" and step["attempts"] == 1
    assert step["inputs"] == {"message": "boom 3"}
    assert step["error"]["type"] == "ActionFailed" and step["error"]["message"] == "boom 3"
    assert step["error"]["traceback"].startswith("Traceback") and "boom 3" in step["error"]["traceback"]
    assert [e["state"] for e in detail["history"]] == ["running", "failed"]
    assert server.api.get(f"/api/v1/runs/{rid}/steps/b").json()["deps"] == ["a"]
    assert "no step" in problem(server.api.get(f"/api/v1/runs/{rid}/steps/nope"), 404)["detail"]
    problem(server.api.get("/api/v1/runs/ZZZZZZZZ/steps/a"), 404)


def test_events_page_through_the_history(server):
    rid = start(server, "quick", inputs={"n": 2})
    settled(server, rid)
    every = server.api.get(f"/api/v1/runs/{rid}/events").json()
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1)) and len(every) >= 6
    assert any(e.get("log") == "one 2" for e in every)
    paged, after = [], 0
    while page := server.api.get(f"/api/v1/runs/{rid}/events", params={"after": after, "limit": 2}).json():
        assert len(page) <= 2
        paged += page
        after = page[-1]["seq"]
    assert paged == every
    assert server.api.get(f"/api/v1/runs/{rid}/events", params={"after": 10**9}).json() == []
    assert problem(server.api.get(f"/api/v1/runs/{rid}/events", params={"limit": 0}), 422)["field"] == "limit"
    assert problem(server.api.get(f"/api/v1/runs/{rid}/events", params={"after": -1}), 422)["field"] == "after"
    problem(server.api.get("/api/v1/runs/ZZZZZZZZ/events"), 404)


def test_graphs_are_svg(server):
    rid = start(server, "quick")
    settled(server, rid)
    for path in (f"/api/v1/runs/{rid}/graph.svg", "/api/v1/flows/create_host/graph.svg"):
        for params in ({}, {"expand": "true"}):
            svg = server.viewer.get(path, params=params)
            assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
            assert "<svg" in svg.text and svg.text.rstrip().endswith("</svg>")
    assert "ptr" in server.api.get("/api/v1/flows/create_host/graph.svg").text
    problem(server.api.get("/api/v1/runs/ZZZZZZZZ/graph.svg"), 404)
    problem(server.api.get("/api/v1/flows/nope/graph.svg"), 404)


# -- steering ----------------------------------------------------------------------------------------


def test_resume_of_a_succeeded_run_is_a_conflict(server):
    rid = start(server, "quick")
    settled(server, rid)
    refused = problem(server.api.post(f"/api/v1/runs/{rid}/resume"), 409)
    assert refused["state"] == "succeeded" and rid in refused["detail"]
    assert problem(server.api.post(f"/api/v1/runs/{rid}/cancel"), 409)["state"] == "succeeded"
    problem(server.api.post("/api/v1/runs/ZZZZZZZZ/resume"), 404)


def test_resume_skip_with_typed_outputs_and_rollback(server):
    fail_next(server, "dns_create:PTR")
    rid = start(server, "create_host", inputs={**FOREMAN, "name": "skipper"})
    run = settled(server, rid)
    assert run["state"] == "paused" and "ptr" in run["error"], run
    preview = server.api.get(f"/api/v1/runs/{rid}/rollback").json()
    assert preview["run_id"] == rid and sorted(preview["undo"]) == ["a", "dhcp"] and preview["without_undo"] == []
    wrong = problem(server.api.post(f"/api/v1/runs/{rid}/steps/ptr/skip", json={"outputs": {"name": 5}}), 422)
    assert wrong["field"].startswith("outputs."), wrong
    problem(server.api.post(f"/api/v1/runs/{rid}/steps/nope/skip", json={}), 404)
    problem(server.api.post(f"/api/v1/runs/{rid}/steps/dhcp/skip", json={}), 409)
    problem(server.api.post(f"/api/v1/runs/{rid}/steps/ptr/skip", json={"outputs": {}, "more": 1}), 422)
    record = {"name": "10.0.0.10", "type": "PTR", "value": "skipper.example.com"}
    skipped = server.api.post(f"/api/v1/runs/{rid}/steps/ptr/skip", json={"outputs": record})
    assert skipped.status_code == 200, skipped.text
    done = settled(server, rid)
    assert done["state"] == "succeeded" and done["result"] == {"ip": "10.0.0.10", "fqdn": "skipper.example.com"}
    assert [s["state"] for s in done["steps"] if s["id"] == "ptr"] == ["skipped"]

    fail_next(server, "dns_create:A")
    again = start(server, "create_host", inputs={**FOREMAN, "name": "resumer", "mac": "52:54:00:00:00:02"})
    assert settled(server, again)["state"] == "paused"
    resumed = server.api.post(f"/api/v1/runs/{again}/resume")
    assert resumed.status_code == 200 and resumed.json()["id"] == again
    assert settled(server, again)["state"] == "succeeded"
    problem(server.api.post(f"/api/v1/runs/{again}/rollback", json={"force": "maybe"}), 422)
    rolled = server.api.post(f"/api/v1/runs/{again}/rollback", json={"force": False})
    assert rolled.status_code == 200, rolled.text
    back = settled(server, again)
    assert back["rolled_back"] and back["outcome"] == "rolled back", back
    assert problem(server.api.post(f"/api/v1/runs/{again}/rollback", json={}), 409)


def test_rerun_a_step_of_a_succeeded_run_and_its_refusals(server):
    rid = start(server, "quick", inputs={"n": 4})
    assert settled(server, rid)["state"] == "succeeded"
    again = server.api.post(f"/api/v1/runs/{rid}/steps/b/rerun", json={})
    assert again.status_code == 200 and again.json()["id"] == rid, again.text
    assert again.json()["state"] == "running"
    done = server.wait_for(rid, ("succeeded",))
    assert {s["id"]: s["attempts"] for s in done["steps"]} == {"a": 1, "b": 2} and done["result"] == {"y": 4}
    assert "re-run of b, asked by the console (operator)" in [e["note"] for e in done["history"]], done["history"]
    assert "no step 'nope'" in problem(server.api.post(f"/api/v1/runs/{rid}/steps/nope/rerun", json={}), 404)["detail"]
    assert problem(server.api.post(f"/api/v1/runs/{rid}/steps/b/rerun", json={"item": 0}), 422)["field"] == "item"
    problem(server.api.post(f"/api/v1/runs/{rid}/steps/b/rerun", json={"with_dependents": "maybe"}), 422)
    problem(server.api.post("/api/v1/runs/ZZZZZZZZ/steps/b/rerun", json={}), 404)

    live = start(server, "waiter", inputs={"who": "rerun"})
    waiting(server, live)  # driven by the server's worker, waiting for its signal
    refused = problem(server.api.post(f"/api/v1/runs/{live}/steps/ask/rerun", json={}), 409)
    assert refused["state"] == "running" and live in refused["detail"], refused
    server.api.post(f"/api/v1/runs/{live}/cancel")
    rolled = start(server, "quick", inputs={"n": 5})
    settled(server, rolled)
    assert server.api.post(f"/api/v1/runs/{rolled}/rollback", json={"force": True}).status_code == 200
    assert settled(server, rolled)["rolled_back"]
    assert "rolled back" in problem(server.api.post(f"/api/v1/runs/{rolled}/steps/a/rerun", json={}), 409)["detail"]


def test_signals_are_checked_by_the_waits_fields(server):
    rid = start(server, "waiter", inputs={"who": "signalled"})
    run = waiting(server, rid)
    assert run["waiting_for"] == ["approval"] and "signal" in run["actions"]
    assert shlex.split(run["commands"]["signal"])[:4] == ["weft", "signal", rid, "approval"]
    post = server.api.post
    assert problem(post(f"/api/v1/runs/{rid}/signals/approval", json={"ok": "yes"}), 422)["field"] == "ok"
    assert problem(post(f"/api/v1/runs/{rid}/signals/approval", json={"note": "x"}), 422)["field"] == "ok"
    assert problem(post(f"/api/v1/runs/{rid}/signals/approval", json={"ok": True, "zz": 1}), 422)["field"] == "zz"
    problem(post(f"/api/v1/runs/{rid}/signals/approval", json=[1]), 422)
    problem(post(f"/api/v1/runs/{rid}/signals/other", json={"ok": True}), 409)
    delivered = post(f"/api/v1/runs/{rid}/signals/approval", json={"ok": True, "note": "fine"})
    assert delivered.status_code == 200 and delivered.json()["name"] == "approval", delivered.text
    assert settled(server, rid)["state"] == "succeeded"
    assert problem(post(f"/api/v1/runs/{rid}/signals/approval", json={"ok": True}), 409)["state"] == "succeeded"


def test_bulk_resume_and_cancel_by_ids_and_by_filter(server):
    paused = [start(server, "breaks", inputs={"n": n}, user="bulker") for n in range(3)]
    ended = start(server, "quick", user="bulker")
    for rid in (*paused, ended):
        settled(server, rid)
    answer = server.api.post("/api/v1/runs/resume", json={"ids": [*paused[:2], ended, "ZZZZZZZZ"]}).json()
    assert answer["done"] == paused[:2] and answer["missing"] == ["ZZZZZZZZ"], answer
    assert [(r["id"], r["state"]) for r in answer["refused"]] == [(ended, "succeeded")]
    assert "succeeded" in answer["refused"][0]["reason"]
    for rid in paused:
        settled(server, rid)
    answer = server.api.post("/api/v1/runs/cancel", json={"filter": {"user": ["bulker"], "state": ["paused"]}}).json()
    assert sorted(answer["done"]) == sorted(paused) and answer["refused"] == [] == answer["missing"], answer
    states = {r["id"]: r["state"] for r in server.api.get("/api/v1/runs", params={"user": "bulker"}).json()["items"]}
    assert states == {**dict.fromkeys(paused, "cancelled"), ended: "succeeded"}
    answer = server.api.post("/api/v1/runs/cancel", json={"filter": {"user": ["bulker"]}}).json()
    assert answer["done"] == [] and len(answer["refused"]) == 4, answer
    for body in ({}, {"ids": [ended], "filter": {}}, {"ids": "x"}, {"filter": {"state": ["nope"]}}):
        problem(server.api.post("/api/v1/runs/resume", json=body), 422)
    refused = problem(server.api.post("/api/v1/runs/cancel", json={"filter": {"since": "yesterday"}}), 422)
    assert refused["detail"].startswith("since takes a duration"), refused  # the request's own name, not --since


# -- listing -----------------------------------------------------------------------------------------


def listed(weft: Weft, *args: str) -> list[str]:
    return [r["id"] for r in json.loads(weft("list", "--json", *args, code=0).stdout)]


def test_listing_agrees_with_weft_list(server):
    ids = []
    for n in range(60):
        flow, inputs = [("quick", {"n": n}), ("breaks", {"n": n}), ("waiter", {"who": f"lister-{n}"})][n % 3]
        ids.append(start(server, flow, inputs=inputs, user="lister" if n % 4 else "other-lister", label=f"L{n:02}"))
    for n, rid in enumerate(ids):
        if n % 3 == 2:
            waiting(server, rid)
        else:
            settled(server, rid)
    server.api.post("/api/v1/runs/cancel", json={"ids": ids[2:12:3]})
    for rid in ids[2:12:3]:
        settled(server, rid)
    weft = Weft(server.folder)
    users = ["--user", "lister", "--user", "other-lister"]
    queries = [
        ({}, []),
        ({"sort": "flow"}, ["--sort", "flow"]),
        ({"sort": "flow", "order": "desc"}, ["--sort=-flow"]),
        ({"sort": "label", "limit": 7, "offset": 10}, ["--sort", "label", "--limit", "7", "--offset", "10"]),
        ({"sort": "started", "order": "asc", "limit": 500}, ["--sort", "started", "--reverse", "--limit", "500"]),
        ({"sort": "ended", "limit": 500}, ["--sort", "ended", "--limit", "500"]),
        ({"sort": "state", "limit": 500}, ["--sort", "state", "--limit", "500"]),
        ({"sort": "user", "limit": 500}, ["--sort", "user", "--limit", "500"]),
        ({"state": "paused"}, ["--state", "paused"]),
        ({"state": ["paused", "cancelled"]}, ["--state", "paused", "--state", "cancelled"]),
        ({"result": "cancelled"}, ["--result", "cancelled"]),
        ({"flow": "quick"}, ["--flow", "quick"]),
        ({"tag": "quick"}, ["--tag", "quick"]),
        ({"label": "l1"}, ["--label", "l1"]),
        ({"lock": "host:lister-14"}, ["--lock", "host:lister-14"]),
        ({"since": "1h", "before": "2999-01-01"}, ["--since", "1h", "--before", "2999-01-01"]),
    ]
    for params, args in queries:
        params = {"user": ["lister", "other-lister"], **params}
        page = server.api.get("/api/v1/runs", params=params).json()
        expected = listed(weft, *users, *args)
        assert [r["id"] for r in page["items"]] == expected, params
        assert page["more"] == (page["offset"] + len(page["items"]) < page["total"])
    everything = listed(weft, *users, "--limit", "1000")
    assert sorted(everything) == sorted(ids)
    assert server.api.get("/api/v1/runs", params={"user": "lister", "limit": 1}).json()["total"] == 45
    walked, offset = [], 0
    while True:
        page = server.api.get("/api/v1/runs", params={"user": users[1::2], "limit": 13, "offset": offset}).json()
        assert page["total"] == 60 and page["limit"] == 13 and page["offset"] == offset
        walked += [r["id"] for r in page["items"]]
        if not page["more"]:
            break
        offset += 13
    assert walked == everything
    assert server.api.get("/api/v1/runs", params={"parent": ids[0]}).json()["total"] == 0
    for params, field in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"offset": -1}, "offset")):
        assert problem(server.api.get("/api/v1/runs", params=params), 422)["field"] == field
    for params in ({"sort": "nope"}, {"order": "up"}, {"state": "nope"}, {"since": "soon"}, {"label": ""}):
        problem(server.api.get("/api/v1/runs", params=params), 422)


def test_workers_list_the_embedded_one(server):
    workers = server.viewer.get("/api/v1/workers").json()
    assert [(w["pid"], w["kind"]) for w in workers] == [(server.process.pid, "server")], workers
    assert workers[0]["limit"] >= 1 and workers[0]["heartbeat"] >= workers[0]["started"]


def test_answers_do_not_wait_for_the_clients_delayed_ack(server):
    # Without TCP_NODELAY on the listening socket each answer's second write waited for the client's delayed
    # ACK: 40 ms or more a request, however small, however quiet the machine.
    took = []
    for _ in range(15):
        started = time.perf_counter()
        server.viewer.get("/api/v1/workers").raise_for_status()
        took.append(time.perf_counter() - started)
    assert sorted(took)[len(took) // 2] < 0.025, took


def test_a_bulk_run_lists_pages_and_resumes_its_sub_runs(server):
    fail_next(server, "dns_create:bulk2.example.com")  # its A record (no retry): that host pauses
    hosts = [{"name": f"bulk{n}", "mac": f"52:54:00:00:09:{n:02}"} for n in range(5)]
    rid = start(server, "bulk_create", inputs={"hosts": hosts, "subnet": "10.9.0.0/24"})
    run = settled(server, rid)
    assert run["state"] == "paused", run
    each = next(s for s in run["steps"] if s["kind"] == "each")["sub_runs"]
    assert each["total"] == 5 and each["counts"] == {"succeeded": 4, "paused": 1}, each
    children = server.api.get("/api/v1/runs", params={"parent": rid, "sort": "label", "limit": 2}).json()
    assert (
        children["total"] == 5
        and children["more"]
        and [r["label"] for r in children["items"]]
        == [
            "Create host bulk0",
            "Create host bulk1",
        ]
    )
    weft = Weft(server.folder)
    for params, args in (({}, []), ({"state": "paused"}, ["--state", "paused"]), ({"offset": 3}, ["--offset", "3"])):
        page = server.api.get("/api/v1/runs", params={"parent": rid, **params}).json()
        assert [r["id"] for r in page["items"]] == listed(weft, "--parent", rid, *args), params
    paused = server.api.get("/api/v1/runs", params={"parent": rid, "state": "paused"}).json()["items"]
    assert [r["parent"]["run"] for r in paused] == [rid] and paused[0]["label"] == "Create host bulk2"
    top = [r["id"] for r in server.api.get("/api/v1/runs", params={"limit": 500}).json()["items"]]
    everything = [
        r["id"] for r in server.api.get("/api/v1/runs", params={"limit": 500, "sub_runs": True}).json()["items"]
    ]
    assert paused[0]["id"] not in top and paused[0]["id"] in everything
    assert server.api.post(f"/api/v1/runs/{rid}/resume").status_code == 200
    done = settled(server, rid)
    assert done["state"] == "succeeded", done
    assert server.api.get("/api/v1/runs", params={"parent": rid, "state": "succeeded"}).json()["total"] == 5


def test_counts_by_window_and_state(server):
    settled(server, start(server, "quick", user="counted"))  # counted once it runs: a pending run is in no column
    counts = server.viewer.get("/api/v1/counts").json()["windows"]
    assert set(counts) == {"12h", "24h", "7d"}
    for window in counts.values():
        assert set(window) == {"running", "paused", "failed", "succeeded", "scheduled"}
        assert all(isinstance(n, int) and n >= 0 for n in window.values())
    assert counts["12h"]["succeeded"] + counts["12h"]["running"] >= 1
    assert all(counts["12h"][s] <= counts["24h"][s] <= counts["7d"][s] for s in counts["12h"])


# -- the catalogue -----------------------------------------------------------------------------------


def test_flows_list_their_params_results_levels_and_critical_path(server):
    flows = server.api.get("/api/v1/flows").json()
    names = [f["name"] for f in flows["items"]]
    assert names == sorted(names) and {"create_host", "quick", "breaks", "waiter"} <= set(names)
    host = server.api.get("/api/v1/flows/create_host").json()
    assert [(p["name"], p["type"], p["default"]) for p in host["params"]] == [
        ("name", "str", None),
        ("mac", "str", None),
        ("subnet", "str", None),
        ("domain", "str", '"example.com"'),
    ]
    assert host["results"] == [{"name": "ip", "type": "str"}, {"name": "fqdn", "type": "str"}]
    assert host["levels"] == [["dhcp"], ["a", "ptr"]] and host["critical_path"][0] == "dhcp"
    assert host["file"].endswith("host.flow") and host["tags"] == ["foreman", "host"]
    assert "no flow" in problem(server.api.get("/api/v1/flows/nope"), 404)["detail"]


def test_a_changed_flow_file_appears_in_the_catalogue_and_a_broken_one_is_a_problem(server):
    live = server.folder / "live"
    (live / "fresh.flow").write_text('flow fresh(k: int) {\n    a = std.log(message: "k ${k}")\n}\n')
    found = eventually(lambda: server.api.get("/api/v1/flows/fresh").json())
    assert [p["name"] for p in found["params"]] == ["k"]
    time.sleep(0.01)
    (live / "fresh.flow").write_text('flow fresh(k: int, j: str = "x") {\n    a = std.log(message: "k ${k}")\n}\n')
    changed = eventually(lambda: server.api.get("/api/v1/flows/fresh").json(), lambda f: len(f["params"]) == 2)
    assert [p["name"] for p in changed["params"]] == ["k", "j"]
    (live / "broken.flow").write_text("flow broken( {\n")
    problems = eventually(lambda: server.api.get("/api/v1/flows").json()["problems"], bool)
    assert {Path(p["file"]).name for p in problems} == {"broken.flow"} and problems[0]["line"] >= 1
    assert "broken" not in [f["name"] for f in server.api.get("/api/v1/flows").json()["items"]]
    rid = start(server, "fresh", inputs={"k": 4})
    assert settled(server, rid)["state"] == "succeeded"
    (live / "broken.flow").unlink()
    (live / "fresh.flow").unlink()
    eventually(lambda: server.api.get("/api/v1/flows").json(), lambda f: not f["problems"])
    problem(server.api.post("/api/v1/runs", json={"flow": "fresh", "inputs": {"k": 1}}), 404)


def eventually(read, ok=lambda found: "detail" not in found, within: float = 2.5):
    """What `read()` gives once `ok` of it holds, within `within` seconds (the catalogue looks every second)."""
    end = time.monotonic() + within
    while True:
        found = read()
        if ok(found):
            return found
        assert time.monotonic() < end, found
        time.sleep(0.05)


# -- no embedded worker ------------------------------------------------------------------------------


def test_no_worker_leaves_runs_pending_until_a_weft_worker_drives_them(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "steer.flow").write_text(STEER)
    with Server(tmp_path, flows=[tmp_path / "flows"], args=("--no-worker",)) as server:
        rid = start(server, "quick", inputs={"n": 5})
        time.sleep(1.0)
        assert server.api.get(f"/api/v1/runs/{rid}").json()["state"] == "pending"
        assert server.viewer.get("/api/v1/workers").json() == []
        weft = Weft(tmp_path)
        worker = Output(weft.start("worker", stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        try:
            run = server.wait_for(rid, ("succeeded",))
            assert run["result"] == {"y": 5}
            workers = server.viewer.get("/api/v1/workers").json()
            assert [(w["pid"], w["kind"]) for w in workers] == [(worker.proc.pid, "worker")], workers
        finally:
            worker.proc.terminate()
            assert worker.proc.wait(30) == 0, worker.lines
