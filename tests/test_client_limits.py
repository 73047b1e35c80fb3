"""The Client's bounds on what it is handed (weft.client.limits) and the first-signal-wins rule, through the Client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from weft.client import Client, Conflict, InvalidInput, NotFound, limits

ROOT = Path(__file__).resolve().parent.parent
CLI_FLOW = str(ROOT / "tests" / "runtime_support" / "cli.flow")
FAULTS = str(ROOT / "tests" / "runtime_support" / "faults.flow")


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def client(tmp_path):
    with Client(tmp_path / "store") as c:
        yield c


def test_values_nested_past_the_limit_are_refused_naming_the_field_and_nothing_is_stored(client, tmp_path):
    for depth in (65, 1_000, 100_000):
        with pytest.raises(InvalidInput, match="nests deeper than 64 levels") as e:
            client.start(FAULTS, "deep", {"value": nested(depth)})
        assert e.value.field == "value"
        with pytest.raises(InvalidInput, match="nests deeper than 64 levels"):
            client.start(FAULTS, "deep", texts=["value=" + "[" * depth + "]" * depth])
    assert not (tmp_path / "store").exists()
    rid = client.start(FAULTS, "deep", {"value": nested(64)})
    assert client.wait(rid, timeout=30).state == "succeeded"

    marker = tmp_path / "m"
    marker.write_text("x")
    gated = client.start(CLI_FLOW, "gate", {"marker": str(marker)})
    assert client.wait(gated, timeout=30).state == "paused"
    with pytest.raises(InvalidInput, match="nests deeper") as e:
        client.skip(gated, "gate", {"value": nested(1_000)})
    assert e.value.field == "value"
    with pytest.raises(InvalidInput, match="nests deeper"):
        client.skip(gated, "gate", texts=["value=" + "{" * 1_000])
    assert client.get(gated).state == "paused"

    waiting = client.start(CLI_FLOW, "approval")
    client.wait(waiting, timeout=1)
    with pytest.raises(InvalidInput, match="nests deeper") as e:
        client.signal(waiting, "approval", ok=True, who=nested(1_000))
    assert e.value.field == "who"
    assert client.get(waiting).waiting_for == ("approval",)
    client.cancel(waiting)


def test_names_filters_and_pages_out_of_range_are_refused_naming_the_field(client):
    cases = [
        (lambda: client.runs(limit=10**23), "limit", "limit must be from 1 to 1,000,000, not 1"),
        (lambda: client.runs(offset=10**23), "offset", "offset must be from 0 to 1,000,000, not 1"),
        (lambda: client.runs(offset=-1), "offset", "offset must be from 0 to 1,000,000, not -1"),
        (lambda: client.runs(since="yesterday"), "since", r"since takes a duration \(30m, 2h, 7d\)"),
        (lambda: client.runs(before="soon"), "before", "before takes a duration"),
        (lambda: client.runs(limit="5"), "limit", "limit must be an integer"),
        (lambda: client.runs(flow="ab\udcffc"), "flow", "is not valid UTF-8 text"),
        (lambda: client.runs(lock=["ok", "x" * 201]), "lock", "lock must be 1 to 200 bytes of UTF-8 text, not 201"),
        (lambda: client.start(FAULTS, "deep", {"value": 1}, user="\udcff"), "user", "not valid UTF-8"),
        (lambda: client.start(FAULTS, "deep", {"value": 1}, user="é" * 101), "user", "not 202"),
        (lambda: client.start(FAULTS, "deep", {"value": 1, "who": "w" * 196}), "lock", "not 201"),
        # a float that is not finite was stored; `weft show --json` then printed NaN (not JSON), the API null
        (lambda: client.start(FAULTS, "deep", {"value": [1, {"x": float("nan")}]}), "value", "holds nan, not a fin"),
        (lambda: client.start(FAULTS, "deep", texts=["value=[1e999]"]), "value", "value holds inf, not a finite"),
        (lambda: client.start(FAULTS, "deep", texts=["value=NaN"]), "value", "value holds nan, not a finite"),
    ]
    for call, field, message in cases:
        with pytest.raises(InvalidInput, match=message) as e:
            call()
        assert e.value.field == field
    rid = client.start(FAULTS, "deep", {"value": 1, "who": "w" * (limits.MAX_NAME - len("lock:"))}, user="u" * 200)
    assert client.wait(rid, timeout=30).state == "succeeded"
    assert [r.id for r in client.runs(user="u" * 200, lock="lock:" + "w" * 195).runs] == []  # ended: lock let go
    assert [r.id for r in client.runs(user="u" * 200).runs] == [rid]


def test_places_to_read_after_and_run_ids_of_the_wrong_kind_are_refused_naming_them(client):
    rid = client.start(FAULTS, "deep", {"value": 1})
    assert client.wait(rid, timeout=30).state == "succeeded"
    reads = (  # each: what it found after a place
        lambda a: client.events(rid, after=a),
        lambda a: client.changes(after=a).items,
        lambda a: client.run_changes(rid, a)[1],
    )
    for read in reads:
        for after, message in ((-5, "not -5"), (2**70, "from 0 to 4,611,686,018,427,387,904"), ("3", "not str")):
            with pytest.raises(InvalidInput, match=message) as e:  # events: a raw struct.error before
                read(after)
            assert e.value.field == "after"
        assert read(0) and not read(limits.MAX_PLACE)
    for text in (None, 5, b"01"):
        with pytest.raises(NotFound, match=f"a run id is text, not {type(text).__name__}"):  # AttributeError before
            client.get(text)


def test_of_signals_racing_in_threads_one_is_delivered_and_the_others_refused(client):
    rid = client.start(FAULTS, "ask", hold=True)
    driving = threading.Thread(target=client.drive, args=(rid,))
    driving.start()
    while client.get(rid).waiting_for != ("approval",):
        time.sleep(0.01)
    results: dict[str, object] = {}

    def send(who: str) -> None:
        try:
            results[who] = client.signal(rid, "approval", who=who).how
        except Conflict as e:
            results[who] = e

    senders = [threading.Thread(target=send, args=(f"p{i}",)) for i in range(6)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    driving.join(30)
    winners = [who for who, r in results.items() if r == "owner"]
    assert len(winners) == 1, results
    refused = [r for r in results.values() if isinstance(r, Conflict)]
    assert len(refused) == 5 and all("already got signal 'approval'" in str(e) for e in refused)
    assert client.get(rid).result == {"who": winners[0]}
