"""Listing and pruning runs through the store port, on stores of a few thousand runs, on every backend.

Every query is checked against a full scan of the run records; every prune
against the derived entries and every record a removed run owned.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

import pytest

from runtime_support import catalog_data
from runtime_support.catalog_data import full_scan as expected
from runtime_support.checks import BACKENDS, index_problems, new_store
from weft.errors import WeftError
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.stores.lmdb.keys import INDEX_VERSION
from weft.runtime.stores.lmdb.store import Store as LmdbStore
from weft.runtime.stores.prune import prune
from weft.runtime.stores.query import SORTS, Query, parse_when, result_name

NOW = 1_790_000_000.0
DAY = 86400.0


def search(store, q):
    return store.search(q)


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request, tmp_path_factory):
    """A store of 3,000 runs over 60 days, and their records."""
    with new_store(request.param, tmp_path_factory.mktemp("catalog")) as store:
        runs = catalog_data.fill(store, 3000, now=NOW)
        yield store, runs


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with new_store(request.param, tmp_path) as s:
        yield s


def queries(runs: list[dict]) -> list[Query]:
    parent = next(r["parent"]["run"] for r in runs if r["parent"])
    holder = next(r for r in runs if r["locks"] and r["state"] not in RUN_ENDED)
    out = [Query(sort=s, reverse=rev) for s in SORTS for rev in (False, True)]
    out += [
        Query(state="succeeded"),
        Query(state="succeeded", sort="user", offset=1500, limit=20),
        Query(state="paused", sort="ended"),
        Query(state="running", sort="label", reverse=True),
        Query(result="rolled back"),
        Query(result="failed", sort="flow"),
        Query(result="cancelled", user="bob"),
        Query(flow="flow_00", tag="prod", sort="state"),
        Query(flow="flow_07", limit=3),
        Query(tag="dns", user="alice", state="succeeded", sort="ended", reverse=True),
        Query(user="carol", offset=10, limit=7),
        Query(user="nobody"),
        Query(label="HOST-0001"),
        Query(label="host-00", sort="label"),
        Query(label="flow 01", state="failed"),
        Query(label="example.com", sort="user", limit=100),
        Query(label="no such label"),
        Query(parent=parent),
        Query(parent=parent, sort="ended", state="succeeded"),
        Query(parent=parent, label="[7]"),
        Query(lock=holder["locks"][0]),
        Query(lock=holder["locks"][0], state="succeeded"),
        Query(lock="host:none"),
        Query(since=NOW - 3 * DAY),
        Query(since=NOW - 30 * DAY, before=NOW - 29 * DAY, sort="flow"),
        Query(before=NOW - 50 * DAY, sort="ended", limit=500),
        Query(since=NOW - 10 * DAY, user="dave", sort="user"),
        Query(since=NOW - 40 * DAY, before=NOW - 20 * DAY, label="flow 00", result="succeeded", limit=5, offset=5),
        Query(since=NOW + DAY),
        Query(state="running", since=NOW - 5 * DAY),  # few candidates, a short range: read from its index keys
        Query(state="running", since=NOW - 59 * DAY, before=NOW - DAY),  # a range too long to read: decoded
        Query(offset=5000),
        Query(sort="ended", offset=2950, limit=100),
        Query(sort="ended", reverse=True, offset=20, limit=30),
        Query(state="succeeded", sort="ended", offset=2500),
    ]
    return out


def test_every_filter_sort_and_page_agrees_with_a_full_scan(filled):
    store, runs = filled
    for q in queries(runs):
        page = search(store, q)
        assert [r["id"] for r in page.runs] == expected(runs, q), q
        total = len(expected(runs, replace(q, offset=0, limit=10**6)))
        assert (page.total, page.more) == (total, total > q.offset + q.limit), q


def test_parent_takes_a_run_id_prefix_and_bad_queries_say_why(filled):
    store, runs = filled
    parent = next(r["parent"]["run"] for r in runs if r["parent"])
    assert [r["id"] for r in search(store, Query(parent=parent[:20].lower(), limit=100)).runs] == expected(
        runs, Query(parent=parent, limit=100)
    )
    for q, message in (
        (Query(sort="size"), "cannot sort by 'size'"),
        (Query(state="sleeping"), "no run state"),
        (Query(limit=0), "--limit must be at least 1"),
        (Query(parent="ZZZZZZZZ"), "no run"),
    ):
        with pytest.raises(WeftError, match=message):
            search(store, q)


def test_a_filtered_limited_list_reads_only_a_little(filled):
    store, _ = filled
    started = time.process_time()  # the reads' work, not a loaded machine's wait for a core
    for q in (
        Query(flow="flow_05", limit=20),
        Query(state="succeeded", sort="user", limit=20),
        Query(label="host-0002", limit=20),
        Query(since=NOW - DAY, limit=20),
    ):
        search(store, q)
    assert time.process_time() - started < 0.5


def test_times_parse_as_durations_ago_or_iso_dates():
    assert parse_when("2h", "--since", now=NOW) == NOW - 7200
    assert parse_when("1d12h", "--since", now=NOW) == NOW - 1.5 * DAY
    assert parse_when("90s", "--since", now=NOW) == NOW - 90
    assert parse_when("2w", "--since", now=NOW) == NOW - 14 * DAY
    assert parse_when("2024-05-01", "--before") == datetime(2024, 5, 1).timestamp()
    assert parse_when("2024-05-01T10:30:00+00:00", "--before") == 1714559400.0
    with pytest.raises(WeftError, match=r"--since takes a duration \(30m, 2h, 7d\) or an ISO date"):
        parse_when("yesterday", "--since")
    assert result_name("rolled-back") == result_name("Rolled_Back") == "rolled back"
    with pytest.raises(WeftError, match="no result 'won'"):
        result_name("won")


def test_prune_removes_old_ended_runs_with_their_sub_runs_and_every_record(store):
    runs = catalog_data.fill(store, 2000, now=NOW, parents=3, children_per_parent=40)
    by_id = {r["id"]: r for r in runs}
    cutoff = NOW - 20 * DAY
    roots = [r for r in runs if not r["parent"] and r["state"] in RUN_ENDED and r["ended"] < cutoff]
    gone = {r["id"] for r in roots} | {
        r["id"] for r in runs if r["parent"] and r["parent"]["run"] in {x["id"] for x in roots}
    }
    assert any(by_id[i]["parent"] for i in gone) and any(r["state"] == "failed" for r in roots)
    done = prune(store, cutoff, batch=100)
    assert (done.removed, done.sub_runs, done.kept) == (len(gone), sum(bool(by_id[i]["parent"]) for i in gone), 0)
    left = {r["id"] for r in runs} - gone
    with store.read() as t:
        assert set(t.run_ids()) == left
        for rid in gone:
            assert (t.plan(rid), t.steps(rid), t.events(rid), t.requests(rid), t.lease(rid)) == (None, {}, [], [], None)
            assert t.queued(rid) is None and t.children(rid) == []
        assert set(t.locks().values()) <= left
        assert {tm.run for tm in t.due(float("inf"))} <= left
    assert index_problems(store) == []
    assert all(
        r["state"] not in RUN_ENDED
        for r in search(store, Query(before=cutoff - DAY, limit=10**6)).runs
        if not r["parent"] and r["created"] < cutoff - 3600
    )
    assert prune(store, cutoff).removed == 0


def test_prune_by_state_keeps_trees_with_a_sub_run_still_paused(store):
    runs = catalog_data.fill(store, 600, now=NOW, parents=1, children_per_parent=10)
    parent = next(r["parent"]["run"] for r in runs if r["parent"])
    child = next(r for r in runs if r["parent"])
    store.write(lambda t: t.put_run({**child, "state": "paused", "ended": None}))
    failed = [r["id"] for r in runs if r["state"] == "failed" and not r["parent"] and not r["rolled_back"]]
    done = prune(store, NOW, "failed")
    assert done.removed == len(failed) + sum(r["state"] == "failed" and r["rolled_back"] for r in runs)
    assert prune(store, NOW, "succeeded").kept == 1
    with store.read() as t:
        assert t.run(parent) is not None and t.run(child["id"])["state"] == "paused"
    assert index_problems(store) == []
    with pytest.raises(WeftError, match="prune removes ended runs only"):
        prune(store, NOW, "paused")


def test_an_lmdb_store_from_before_the_new_indexes_gets_them_when_opened(tmp_path):
    with LmdbStore(str(tmp_path)) as store:
        runs = catalog_data.fill(store, 300, now=NOW, parents=0)

        def downgrade(t):  # the LMDB backend's own key access: what an older weft wrote
            for field in (b"user\0", b"label\0", b"result\0"):
                for key in list(t.keys("indexes", field)):
                    t.delete("indexes", key)
            t.delete("meta", b"indexes")

        store.write(downgrade)
        assert index_problems(store)
    with LmdbStore(str(tmp_path), create=False) as store:
        assert index_problems(store) == []
        page = search(store, Query(user="erin", limit=1000))
        assert [r["id"] for r in page.runs] == expected(runs, Query(user="erin", limit=1000))
        with store.read() as t:
            assert t.meta("indexes") == {"version": INDEX_VERSION}
