"""schemathesis against the OpenAPI document of a real `weft serve` (issue 10): for every operation but the two
streams, generated requests (valid ones, and ones that break the schema) get no 5xx, and every answer is
documented: its status, its content type and its body's JSON schema.

Half of the generated requests name real runs, steps, signals and flows of the store, so that they reach
past the 404s into the runs' states (conflicts, checked outputs and signal fields)."""

from __future__ import annotations

import re
import time
from calendar import monthrange
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from server_support import EXAMPLES, Server

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 15  # per mode and operation: about 20 s on an idle 2-core machine
SHARDS = 4  # the operations are split into this many tests
STREAMS = ("/api/v1/events", "/api/v1/runs/{run_id}/stream")  # they stream until the client leaves
FLOWS = """
flow waiter(who: str = "x") {
    lock "host:${who}"
    ask = wait approval(ok: bool, note?: str) timeout 1h
}

flow breaks(n: int = 1) -> (y: int) {
    a = std.fail(message: "boom ${n}")
    b = std.echo(value: n) after a
    return (y: n)
}

flow quick(n: int = 1) -> (y: int) {
    a = std.log(message: "one ${n}")
    return (y: n)
}
"""
SCHEDULE = {"name": "nightly", "flow": "quick", "cron": "0 3 * * *"}
DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Server, list[dict]]]:
    """A server with runs in several states, and those runs (id, steps, signals) to aim requests at."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "flows").mkdir()
    (folder / "flows" / "steer.flow").write_text(FLOWS)
    with Server(folder, flows=[folder / "flows", EXAMPLES / "foreman"]) as server:
        starts = [("waiter", {"who": "a"}), ("breaks", {"n": 2}), ("quick", {}), ("breaks", {"n": 3})]
        ids = [server.api.post("/api/v1/runs", json={"flow": f, "inputs": i}).json()["id"] for f, i in starts]
        assert server.api.post("/api/v1/schedules", json=SCHEDULE).status_code == 201
        runs = []
        for rid in ids:
            end = time.monotonic() + 30
            while (run := server.api.get(f"/api/v1/runs/{rid}").json())["state"] == "pending" or (
                run["flow"] == "waiter" and not run["waiting_for"]
            ):
                assert time.monotonic() < end, run
                time.sleep(0.05)
            runs.append(run)
        yield server, runs


def calendar_dates(case) -> bool:
    """Whether every date in since/before is a real day: a pattern cannot say that February has no 30th."""
    values = [case.query.get(k) for k in ("since", "before")] if case.query else []
    if isinstance(case.body, dict) and isinstance(case.body.get("filter"), dict):
        values += [case.body["filter"].get(k) for k in ("since", "before")]
    for value in filter(None, values):
        found = DATE.match(str(value))
        if found and int(found[3]) > monthrange(int(found[1]), int(found[2]))[1]:
            return False
    return True


def short_names(case) -> bool:
    """Whether every filter value is within 200 UTF-8 bytes: the schema can only count characters."""
    values = [v for v in (case.query or {}).values() for v in (v if isinstance(v, list) else [v])]
    if isinstance(case.body, dict):
        values += [case.body.get(k) for k in ("user", "label")]
    return all(len(v.encode()) <= 200 for v in values if isinstance(v, str))


def aim(case, run: dict | None, flows: list[str]) -> None:
    """Point the case's path at a real run (one of its steps, its signal), flow or schedule, and its body at a
    real flow."""
    params = case.path_parameters or {}
    if run is None:
        return
    if "run_id" in params:
        params["run_id"] = run["id"]
    if "step" in params:
        params["step"] = run["steps"][len(str(params["step"])) % len(run["steps"])]["id"]
    if "name" in params:
        if "/signals/" in case.path:
            params["name"] = run["waiting_for"][0] if run["waiting_for"] else "approval"
        else:
            params["name"] = SCHEDULE["name"] if case.path.startswith("/api/v1/schedules/") else flows[0]
    if case.path == "/api/v1/runs" and case.method == "POST" and isinstance(case.body, dict):
        case.body["flow"] = flows[len(str(case.body.get("inputs"))) % len(flows)]


def operations(schema) -> list:
    return [r.ok() for r in schema.get_all_operations() if r.ok().path not in STREAMS]


def fuzz(op, mode: GenerationMode, runs: list[dict], flows: list[str], headers: dict, tried: dict) -> None:
    """Up to EXAMPLES_PER_OPERATION requests of `op` in `mode`, each answer checked against the document."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), run=st.sampled_from([None, *runs]))
    def check(case, run):
        assume(calendar_dates(case) and short_names(case))
        aim(case, run, flows)
        excluded = []
        if run is not None:  # a real run's state and types may refuse what the schema allows
            excluded.append(positive_data_acceptance)
        if mode is GenerationMode.NEGATIVE:  # a query string cannot break a string's type
            excluded.append(negative_data_rejection)
        case.call_and_validate(headers=headers, excluded_checks=excluded, timeout=30)
        tried[op.label] = tried.get(op.label, 0) + 1

    try:
        check()
    except Unsatisfiable:  # nothing in this operation can break the schema (no parameters, or only strings)
        assert mode is GenerationMode.NEGATIVE, op.label


@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_api_keeps_to_its_openapi_document(served, shard):
    """Every SHARDS-th operation from `shard` on (the shards run in parallel under xdist)."""
    server, runs = served
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    every = operations(schema)
    assert len(every) >= 20
    ops = every[shard::SHARDS]
    flows = [f["name"] for f in server.api.get("/api/v1/flows").json()["items"]]
    headers = {"Authorization": f"Bearer {server.token}"}
    tried: dict[str, int] = {}
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op, mode, runs, flows, headers, tried)
    assert set(tried) == {op.label for op in ops}
