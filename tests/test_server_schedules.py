"""Schedules and delayed runs over HTTP, against a real `weft serve` whose embedded worker fires them."""

from __future__ import annotations

import time

import pytest

from server_support import EXAMPLES, Server

pytestmark = pytest.mark.slow

HOST = {"name": "web1", "mac": "52:54:00:00:00:01", "subnet": "10.0.0.0/24"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("schedules"), flows=[EXAMPLES / "foreman"]) as s:
        yield s


def test_a_schedule_added_over_http_fires_its_slots_and_is_steered(server):
    api = server.api
    r = api.post(
        "/api/v1/schedules",
        json={"name": "web", "flow": "create_host", "inputs": HOST, "every": 1, "max_runs": 2, "overlap": "allow"},
    )
    assert r.status_code == 201 and r.headers["location"] == "/api/v1/schedules/web", r.text
    assert len(r.json()["upcoming"]) == 2  # max_runs bounds the slots shown
    end = time.monotonic() + 20
    while api.get("/api/v1/runs", params={"schedule": "web"}).json()["total"] < 2:
        assert time.monotonic() < end
        time.sleep(0.1)
    s = api.get("/api/v1/schedules/web").json()
    assert s["fired"] == 2 and [e["what"] for e in s["history"]] == ["fire", "fire"] and s["upcoming"] == []
    runs = api.get("/api/v1/runs", params={"schedule": "web"}).json()["items"]
    assert sorted(r["schedule"]["slot"] for r in runs) == sorted(e["slot"] for e in s["history"])
    assert [x["name"] for x in api.get("/api/v1/schedules").json()] == ["web"]
    assert api.post("/api/v1/schedules/web/pause", json={"note": "maintenance"}).json()["note"] == "maintenance"
    assert api.post("/api/v1/schedules/web/resume").json()["paused"] is False
    for r in runs:
        server.wait_for(r["id"], ("succeeded",))  # they hold the host's lock while they run
    triggered = api.post("/api/v1/schedules/web/trigger")
    assert triggered.status_code == 201
    run = server.wait_for(triggered.json()["run"], ("succeeded",))
    assert run["schedule"]["name"] == "web"
    assert api.post("/api/v1/schedules/web/remove").status_code == 204
    assert api.get("/api/v1/schedules/web").status_code == 404
    assert api.get("/api/v1/runs", params={"schedule": "web"}).json()["total"] == 3  # its runs stay


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"name": "x", "flow": "create_host", "inputs": {**HOST, "mac": 5}, "every": 60}, 422, "inputs.mac"),
        ({"name": "x", "flow": "create_host", "inputs": HOST, "cron": "99 * * * *"}, 422, "cron"),
        ({"name": "x", "flow": "create_host", "inputs": HOST, "every": 60, "cron": "0 3 * * *"}, 422, "cron"),
        ({"name": "x", "flow": "create_host", "inputs": HOST, "every": 60, "tz": "Nowhere/City"}, 422, "tz"),
        ({"name": "x", "flow": "no_such_flow", "inputs": HOST, "every": 60}, 404, None),
        ({"name": "-x", "flow": "create_host", "inputs": HOST, "every": 60}, 422, "name"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(server, body, status, field):
    r = server.api.post("/api/v1/schedules", json=body)
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json().get("field") == field


def test_the_viewer_token_reads_schedules_and_changes_none(server):
    server.api.post(
        "/api/v1/schedules", json={"name": "seen", "flow": "create_host", "inputs": HOST, "cron": "0 3 * * *"}
    )
    assert server.viewer.get("/api/v1/schedules/seen").status_code == 200
    for path in ("/api/v1/schedules/seen/pause", "/api/v1/schedules/seen/trigger", "/api/v1/schedules/seen/remove"):
        assert server.viewer.post(path, json={}).status_code == 403
    assert server.anonymous.get("/api/v1/schedules").status_code == 401


def test_a_delayed_run_started_over_http_waits_then_runs(server):
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 2))
    later = {**HOST, "name": "later", "mac": "52:54:00:00:00:02"}
    r = server.api.post("/api/v1/runs", json={"flow": "create_host", "inputs": later, "at": at})
    assert r.status_code == 201 and r.json()["state"] == "scheduled" and r.json()["actions"] == ["cancel"]
    run = server.wait_for(r.json()["id"], ("succeeded",), timeout=30)
    assert run["started"] >= run["due"]
    naive = server.api.post("/api/v1/runs", json={"flow": "create_host", "inputs": HOST, "at": "2030-01-01T00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "at"  # a time without its offset is ambiguous
