"""The store port's contract, run against every backend (tests/runtime_support/checks.py BACKENDS).

A new backend (PostgreSQL...) is added to BACKENDS and passes this file; nothing
here knows how a backend keys or indexes its records.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from runtime_support.catalog_data import run_id
from runtime_support.checks import BACKENDS, new_store
from weft.errors import WeftError
from weft.runtime.stores import open_store
from weft.runtime.core.timers import Timer
from weft.runtime.stores.port import StoreError
from weft.runtime.stores.prune import prune
from weft.runtime.stores.query import Query

T0 = 1_700_000_000.0


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with new_store(request.param, tmp_path / "store") as s:
        yield s


def run_record(run_id, *, state="running", created=T0, ended=None, **fields) -> dict:
    return {
        "id": run_id,
        "state": state,
        "flow": "f",
        "tags": [],
        "user": "u",
        "label": None,
        "parent": None,
        "locks": [],
        "rolled_back": False,
        "created": created,
        "ended": ended,
        **fields,
    }


def make_ids(n: int) -> list[str]:
    """`n` run ids, oldest first, a second apart (so they differ within their first 10 characters)."""
    return [run_id(int((T0 + i) * 1000), i) for i in range(n)]


def put_runs(store, *runs: dict) -> None:
    store.write(lambda t: [t.put_run(r) for r in runs])


# -- transactions --------------------------------------------------------------------------


def test_a_write_that_raises_leaves_nothing_behind(store):
    (a,) = make_ids(1)

    def half(t):
        t.put_run(run_record(a))
        t.put_plan(a, {"steps": []})
        t.put_step(a, "s", {"attempts": 1, "state": "pending", "due": T0})
        t.append_events(a, [{"n": 1}])
        t.put_lock("L", a)
        t.enqueue(a, T0)
        t.put_request(a, "cancel", {"kind": "cancel"})
        t.put_lease(a, {"pid": 1})
        t.put_meta("m", 1)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        store.write(half)
    with store.read() as t:
        assert (t.run(a), t.plan(a), t.steps(a), t.events(a), t.lease(a)) == (None, None, {}, [], None)
        assert (t.locks(), t.queued(a), t.requests(a), t.meta("m"), t.next_due()) == ({}, None, [], None, None)
        assert list(t.run_ids()) == [] and t.problems() == []


def test_a_value_that_is_not_plain_data_fails_the_write_and_changes_nothing(store):
    a, b = make_ids(2)
    with pytest.raises(StoreError, match="value cannot be stored"):
        store.write(lambda t: [t.put_run(run_record(a)), t.put_run(run_record(b, result=object()))])
    with store.read() as t:
        assert t.run(a) is None


def test_a_write_returns_what_its_function_returns_and_changes_are_visible_after(store):
    (a,) = make_ids(1)
    assert store.write(lambda t: t.put_run(run_record(a)) or "done") == "done"
    with store.read() as t:
        assert t.run(a) == run_record(a)


def test_reads_are_snapshots_and_returned_records_are_copies(store):
    (a,) = make_ids(1)
    put_runs(store, run_record(a))
    with store.read() as before:
        thread = threading.Thread(target=lambda: put_runs(store, run_record(a, state="paused")))
        thread.start()
        thread.join()
        assert before.run(a)["state"] == "running"
        got = before.run(a)
        got["state"] = "changed"
        assert before.run(a)["state"] == "running"
    with store.read() as after:
        assert after.run(a)["state"] == "paused"


def test_a_read_does_not_wait_for_a_write_in_flight(store):
    (a,) = make_ids(1)
    put_runs(store, run_record(a))
    inside, release = threading.Event(), threading.Event()

    def slow(t):
        t.put_run(run_record(a, state="paused"))
        inside.set()
        assert release.wait(10)

    writer = threading.Thread(target=store.write, args=(slow,))
    writer.start()
    try:
        assert inside.wait(10)
        with store.read() as t:  # would hang here if reads waited for the writer
            assert t.run(a)["state"] == "running"
    finally:
        release.set()
        writer.join()
    with store.read() as t:
        assert t.run(a)["state"] == "paused"


def test_writes_from_many_threads_are_serialized(store):
    store.write(lambda t: t.put_meta("count", 0))

    def bump():
        for _ in range(50):
            store.write(lambda t: t.put_meta("count", t.meta("count") + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.read() as t:
        assert t.meta("count") == 200


def test_a_read_transaction_refuses_writes(store):
    (a,) = make_ids(1)
    with pytest.raises(StoreError):
        with store.read() as t:
            t.put_run(run_record(a))


def test_stores_opened_twice_share_records_and_a_missing_store_is_not_created(store, tmp_path):
    (a,) = make_ids(1)
    put_runs(store, run_record(a))
    with open_store(store.path, create=False) as again:
        with again.read() as t:
            assert t.run(a)["id"] == a
        again.write(lambda t: t.put_meta("seen", True))
    with store.read() as t:  # closing one handle leaves the other open
        assert t.meta("seen") is True
    missing = store.path.replace("store", "none")
    with pytest.raises(StoreError, match="no store at"):
        open_store(missing, create=False)


# -- runs, steps, history ------------------------------------------------------------------


def test_steps_plans_and_meta_round_trip_in_step_id_order(store):
    (a,) = make_ids(1)

    def write(t):
        t.put_run(run_record(a))
        t.put_plan(a, {"format": "weft.plan", "steps": [{"id": sid} for sid in ("z", "a/b", "a", "m")]})
        for sid in ("z", "a/b", "a", "m"):
            t.put_step(a, sid, {"attempts": 1, "state": "pending", "n": sid})
        t.put_meta("bench", [1, 2])

    store.write(write)
    with store.read() as t:
        assert list(t.steps(a)) == ["a", "a/b", "m", "z"]
        assert t.steps(a)["m"] == {"attempts": 1, "state": "pending", "n": "m"}
        assert t.plan(a)["steps"][1] == {"id": "a/b"}
        assert t.meta("bench") == [1, 2] and t.meta("other") is None
        assert t.steps("0" * 26) == {}


def test_new_steps_written_in_one_pass_are_separate_records_with_their_timers(store):
    (a,) = make_ids(1)
    ids = [f"s{i}" for i in range(300)]

    def create(t):
        t.put_run(run_record(a))
        t.put_plan(a, {"format": "weft.plan", "steps": [{"id": sid, "phase": "run", "kind": "action"} for sid in ids]})
        t.put_new_steps(a, ids, {"state": "pending", "attempts": 0, "due": None})

    store.write(create)
    store.write(lambda t: t.put_step(a, "s7", {"state": "pending", "attempts": 1, "due": T0 + 5}))
    store.write(lambda t: t.put_step(a, "s8", {"state": "succeeded", "attempts": 1, "due": None}))
    with store.read() as t:
        steps = t.steps(a)
        assert sorted(steps) == sorted(ids) and steps["s0"] == {"state": "pending", "attempts": 0, "due": None}
        assert steps["s7"]["due"] == T0 + 5 and steps["s8"]["state"] == "succeeded"
        assert [(tm.step, tm.due) for tm in t.due(T0 + 10)] == [("s7", T0 + 5)]
        assert t.step_counts(a) in (None, {"pending": 299, "succeeded": 1})
    store.write(lambda t: t.put_step(a, "s7", {"state": "running", "attempts": 2, "due": None}))
    with store.read() as t:
        assert list(t.due(T0 + 10)) == []
    (b,) = [run_id(int(T0 * 1000) + 5, 9)]
    store.write(lambda t: t.put_new_steps(b, ["w"], {"state": "pending", "attempts": 1, "due": T0 + 1}))
    with store.read() as t:
        assert [(tm.run, tm.step) for tm in t.due(T0 + 10)] == [(b, "w")]


def test_step_counts_where_kept_follow_every_write_of_the_step_records(store):
    a, b = make_ids(2)

    def counted(t, rid):
        counts = t.step_counts(rid)
        assert counts is None or counts == dict(sorted(Counter(t.step_states(rid).values()).items()))
        return counts

    def create(t):
        for rid in (a, b):
            t.put_run(run_record(rid))
            t.put_plan(rid, {"format": "weft.plan", "steps": [{"id": sid} for sid in ("x", "y", "z")]})
            for sid in ("x", "y", "z"):
                t.put_step(
                    rid, sid, {"state": "pending", "attempts": 0} if sid != "z" else {"attempts": 0, "state": "pending"}
                )

    def fail(t):
        t.put_step(a, "y", {"state": "failed", "attempts": 1})
        raise RuntimeError("no")

    store.write(create)
    store.write(
        lambda t: [
            t.put_step(a, "x", {"state": "running", "attempts": 1}),
            t.put_step(a, "x", {"state": "succeeded", "attempts": 1}),
        ]
    )
    with pytest.raises(RuntimeError):
        store.write(fail)
    store.write(
        lambda t: [
            t.put_step(a, "z", {"attempts": 1, "state": "running"}),
            t.put_step(b, "y", {"state": "skipped", "attempts": 0}),
        ]
    )
    with store.read() as t:
        assert counted(t, a) in (None, {"pending": 1, "running": 1, "succeeded": 1})
        assert counted(t, b) in (None, {"pending": 2, "skipped": 1})
    store.write(lambda t: t.delete_run(a))
    with store.read() as t:
        assert t.step_counts(a) is None and counted(t, b) in (None, {"pending": 2, "skipped": 1})


def test_history_is_append_only_with_seqs_from_one(store):
    a, b = make_ids(2)
    assert store.write(lambda t: t.append_events(a, [{"n": 1}, {"n": 2}])) == 2
    assert store.write(lambda t: [t.append_events(b, [{"n": 9}]), t.append_events(a, [{"n": 3}])])[1] == 3
    with store.read() as t:
        assert t.events(a) == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]
        assert t.events(a, after=2) == [(3, {"n": 3})] and t.events(a, after=3) == []
        assert (t.last_seq(a), t.last_seq(b), t.last_seq("0" * 26)) == (3, 1, 0)
        assert t.events(b) == [(1, {"n": 9})]


def test_a_page_of_history_stops_at_its_limit(store):
    (a,) = make_ids(1)
    store.write(lambda t: t.append_events(a, [{"n": n} for n in range(1, 6)]))
    with store.read() as t:
        assert t.events(a, after=1, limit=2) == [(2, {"n": 2}), (3, {"n": 3})]
        assert t.events(a, after=4, limit=10) == [(5, {"n": 5})] and t.events(a, limit=0) == []


def test_the_feed_lists_every_runs_events_in_commit_order(store):
    a, b = make_ids(2)
    with store.read() as t:
        assert t.feed_end() == 0
    store.write(lambda t: t.append_events(a, [{"n": 1}, {"n": 2}]))
    store.write(lambda t: [t.append_events(b, [{"n": 9}]), t.append_events(a, [{"n": 3}])])
    with store.read() as t:
        assert t.feed() == [(1, a, 1), (2, a, 2), (3, b, 1), (4, a, 3)]
        assert t.feed(after=2, limit=1) == [(3, b, 1)] and t.feed(after=4) == [] and t.feed(limit=0) == []
        assert t.feed(after=1) == [(2, a, 2), (3, b, 1), (4, a, 3)] and t.feed(limit=1) == [(1, a, 1)]
        assert t.feed_end() == 4
    store.write(lambda t: t.append_events(b, [{"n": n} for n in range(2, 7)]))  # one write, five places
    with store.read() as t:
        assert t.feed(after=5, limit=2) == [(6, b, 3), (7, b, 4)] and t.feed(after=8) == [(9, b, 6)]
        assert t.feed_end() == 9 and [p for p, _, _ in t.feed(after=3)] == [4, 5, 6, 7, 8, 9]


def test_trimming_the_feed_drops_deleted_runs_at_its_head_and_places_go_on(store):
    a, b, c = make_ids(3)
    put_runs(store, run_record(a), run_record(b), run_record(c))
    for rid in (a, b, a, c):
        store.write(lambda t, rid=rid: t.append_events(rid, [{"n": 1}]))
    store.write(lambda t: [t.delete_run(a), t.delete_run(c)])
    assert store.write(lambda t: t.trim_feed(10)) == 1  # a's first event; b's is still stored, so it stops there
    with store.read() as t:
        assert [p for p, _, _ in t.feed()] == [2, 3, 4]
    store.write(lambda t: t.delete_run(b))
    assert store.write(lambda t: t.trim_feed(10)) == 2  # the last entry stays: places never start over
    store.write(lambda t: t.append_events(b, [{"n": 2}]))
    with store.read() as t:
        assert t.feed() == [(4, c, 1), (5, b, 1)]


def test_schedules_are_kept_by_name(store):
    store.write(lambda t: [t.put_schedule({"name": n, "every": 60.0}) for n in ("b-nightly", "a-hourly")])
    store.write(lambda t: t.put_schedule({"name": "a-hourly", "every": 3600.0}))
    with store.read() as t:
        assert [r["name"] for r in t.schedules()] == ["a-hourly", "b-nightly"]
        assert t.schedule("a-hourly")["every"] == 3600.0 and t.schedule("none") is None
    store.write(lambda t: t.drop_schedule("b-nightly"))
    with store.read() as t:
        assert [r["name"] for r in t.schedules()] == ["a-hourly"]


def test_run_ids_are_oldest_first_and_find_run_takes_unique_prefixes(store):
    runs = make_ids(3)
    a = runs[0]
    twin = a[:-1] + ("1" if a[-1] != "1" else "2")
    put_runs(store, *(run_record(r) for r in [*reversed(runs), twin]))
    with store.read() as t:
        assert list(t.run_ids()) == sorted([*runs, twin])
        assert list(t.run_ids(a[:-1])) == sorted([a, twin])
        assert t.find_run(a.lower()) == a
        assert t.find_run(runs[2][:-2]) == runs[2]
        with pytest.raises(StoreError, match=f"run id prefix '{a[:-1]}' is ambiguous: {min(a, twin)}, {max(a, twin)}"):
            t.find_run(a[:-1])
        with pytest.raises(StoreError, match=f"no run 'ZZZZ' in {store.path}"):
            t.find_run("ZZZZ")
        with pytest.raises(StoreError, match="is not a run id"):
            t.find_run("run-1!")


def test_children_are_listed_by_item_index(store):
    parent, *kids = make_ids(5)
    links = [("each", 2), ("each", 0), ("each", 1), ("other", 0)]
    put_runs(
        store,
        run_record(parent),
        *(run_record(k, parent={"run": parent, "step": s, "index": i}) for k, (s, i) in zip(kids, links)),
    )
    with store.read() as t:
        assert t.children(parent, "each") == [(0, kids[1]), (1, kids[2]), (2, kids[0])]
        assert t.children(parent, "other") == [(0, kids[3])]
        assert t.children(parent) == [(0, kids[1]), (1, kids[2]), (2, kids[0]), (0, kids[3])]
        assert t.children(parent, "none") == [] and t.children(kids[0]) == []


def test_index_orders_runs_by_time_or_lists_one_value(store):
    a, b, c = make_ids(3)
    put_runs(
        store,
        run_record(a, created=T0 + 2, state="succeeded", ended=T0 + 9, tags=["x"]),
        run_record(b, created=T0 + 1, tags=["x", "y"]),
        run_record(c, created=T0 + 3, state="failed", ended=T0 + 5, rolled_back=True),
    )
    with store.read() as t:
        assert list(t.index("started")) == [b, a, c]
        assert list(t.index("started", reverse=True)) == [c, a, b]
        assert list(t.index("ended")) == [c, a]
        assert list(t.index("state", "running")) == [b]
        assert list(t.index("tag", "x")) == [a, b]
        assert list(t.index("result", "rolled back")) == [c]
        assert list(t.index("result")) == [c, a]  # by value: "rolled back" < "succeeded"


# -- ownership -----------------------------------------------------------------------------


def test_leases_locks_and_requests(store):
    a, b = make_ids(2)

    def write(t):
        t.put_lease(b, {"pid": 2})
        t.put_lease(a, {"pid": 1})
        t.put_lock("host:b", b)
        t.put_lock("host:a", a)
        t.put_request(a, "signal", {"kind": "signal"})
        t.put_request(a, "cancel", {"kind": "cancel"})

    store.write(write)
    with store.read() as t:
        assert list(t.leases()) == [(a, {"pid": 1}), (b, {"pid": 2})]
        assert t.locks() == {"host:a": a, "host:b": b} and list(t.locks()) == ["host:a", "host:b"]
        assert t.lock_holder("host:a") == a and t.lock_holder("none") is None
        assert t.requests(a) == [("cancel", {"kind": "cancel"}), ("signal", {"kind": "signal"})]
        assert t.requests(b) == []
    store.write(lambda t: [t.drop_lease(a), t.put_lock("host:a", None), t.drop_request(a, "cancel")])
    with store.read() as t:
        assert list(t.leases()) == [(b, {"pid": 2})] and t.lease(a) is None
        assert t.locks() == {"host:b": b}
        assert t.requests(a) == [("signal", {"kind": "signal"})]


def test_the_work_queue_keeps_each_runs_earliest_time(store):
    a, b, c = make_ids(3)
    store.write(lambda t: [t.enqueue(a, T0 + 5), t.enqueue(b, T0 + 3), t.enqueue(c, T0 + 3)])
    store.write(lambda t: [t.enqueue(a, T0 + 8), t.enqueue(c, T0 + 1)])  # a keeps 5, c moves to 1
    with store.read() as t:
        assert (t.queued(a), t.queued(c)) == (T0 + 5, T0 + 1)
        assert t.due_runs(T0 + 10, 10) == [c, b, a]
        assert t.due_runs(T0 + 10, 2) == [c, b]
        assert t.due_runs(T0 + 3, 10) == [c, b]
        assert t.due_runs(T0, 10) == []
    store.write(lambda t: t.dequeue(c))
    with store.read() as t:
        assert t.due_runs(T0 + 10, 10) == [b, a] and t.queued(c) is None
        assert t.problems() == []


def test_hand_over_leaves_a_request_and_queues_the_run(store):
    (a,) = make_ids(1)
    store.hand_over(a, "signal", {"kind": "signal", "name": "go"})
    with store.read() as t:
        assert t.requests(a) == [("signal", {"kind": "signal", "name": "go"})]
        assert t.due_runs(float("inf"), 10) == [a]


def test_timers_follow_the_step_records_earliest_first(store):
    a, b = make_ids(2)
    store.write(
        lambda t: [
            t.put_step(a, "retry", {"attempts": 1, "state": "pending", "due": T0 + 30}),
            t.put_step(
                a, "poll", {"attempts": 1, "state": "suspended", "poll": {"h": 1}, "due": T0 + 10, "deadline": T0 + 60}
            ),
            t.put_step(b, "run", {"attempts": 1, "state": "running", "deadline": T0 + 20}),
            t.put_step(b, "idle", {"attempts": 1, "state": "pending", "due": None}),
            t.put_step(b, "done", {"attempts": 1, "state": "succeeded", "due": T0, "deadline": T0}),
        ]
    )
    with store.read() as t:
        assert [(tm.run, tm.step, tm.kind) for tm in t.due(float("inf"))] == [
            (a, "poll", "poll"),
            (b, "run", "deadline"),
            (a, "retry", "retry"),
            (a, "poll", "deadline"),
        ]
        assert [tm.step for tm in t.due(T0 + 20)] == ["poll", "run"]
        assert t.next_due() == Timer(T0 + 10, "poll", "poll", run=a)
        assert t.problems() == []
    store.write(
        lambda t: [
            t.put_step(a, "poll", {"attempts": 1, "state": "succeeded"}),
            t.put_step(b, "run", {"attempts": 1, "state": "failed"}),
        ]
    )
    with store.read() as t:
        assert [(tm.step, tm.kind) for tm in t.due(float("inf"))] == [("retry", "retry")]
        assert t.problems() == []


# -- queries and pages ---------------------------------------------------------------------


def listing(store) -> list[str]:
    runs = make_ids(6)
    parent = runs[0]
    put_runs(
        store,
        run_record(runs[0], created=T0, state="succeeded", ended=T0 + 50, flow="bulk", label="Bulk of two"),
        run_record(runs[1], created=T0 + 1, parent={"run": parent, "step": "each", "index": 0}, flow="host"),
        run_record(runs[2], created=T0 + 2, parent={"run": parent, "step": "each", "index": 1}, flow="host"),
        run_record(runs[3], created=T0 + 3, user="alice", tags=["dns"], label="Create host a", locks=["host:a"]),
        run_record(runs[4], created=T0 + 4, state="failed", ended=T0 + 10, rolled_back=True, user="bob"),
        run_record(runs[5], created=T0 + 5, state="paused", user="alice", tags=["dns", "prod"], label="host b"),
    )
    store.write(lambda t: t.put_lock("host:a", runs[3]))
    return runs


def page_ids(store, **q) -> list[str]:
    return [r["id"] for r in store.search(Query(**q)).runs]


def test_queries_filter_sort_and_page(store):
    r = listing(store)
    assert page_ids(store) == [r[5], r[4], r[3], r[0]]  # top-level runs, newest first
    assert page_ids(store, reverse=True) == [r[0], r[3], r[4], r[5]]
    assert page_ids(store, sub_runs=True) == [r[5], r[4], r[3], r[2], r[1], r[0]]
    assert page_ids(store, user="alice") == [r[5], r[3]]
    assert page_ids(store, tag="dns", state="paused") == [r[5]]
    assert page_ids(store, result="rolled back") == [r[4]]
    assert page_ids(store, result="succeeded") == [r[0]]
    assert page_ids(store, label="HOST") == [r[5], r[3]]
    assert page_ids(store, lock="host:a") == [r[3]]
    assert page_ids(store, lock="host:none") == []
    assert page_ids(store, parent=r[0][:22].lower()) == [r[2], r[1]]
    assert page_ids(store, since=T0 + 3, before=T0 + 5) == [r[4], r[3]]
    assert page_ids(store, sort="ended") == [r[0], r[4], r[5], r[3]]  # runs that have not ended come last
    assert page_ids(store, sort="ended", reverse=True) == [r[4], r[0], r[3], r[5]]
    assert page_ids(store, sort="user") == [r[3], r[5], r[4], r[0]]
    assert page_ids(store, sort="label") == [r[4], r[0], r[3], r[5]]  # no label sorts first
    assert page_ids(store, sort="state", reverse=True) == [r[0], r[3], r[5], r[4]]
    assert page_ids(store, sort="flow") == [r[0], r[3], r[4], r[5]]


def test_a_page_says_how_many_runs_match_in_all(store):
    r = listing(store)
    page = store.search(Query(limit=2, offset=1))
    assert ([x["id"] for x in page.runs], page.total, page.more) == ([r[4], r[3]], 4, True)
    last = store.search(Query(limit=2, offset=2))
    assert ([x["id"] for x in last.runs], last.total, last.more) == ([r[3], r[0]], 4, False)
    beyond = store.search(Query(offset=10, user="alice"))
    assert (beyond.runs, beyond.total, beyond.more) == ([], 2, False)
    with store.read() as t:
        assert t.search(Query(limit=1)).runs[0] == t.run(r[5])


def test_a_bad_query_says_what_is_wrong(store):
    listing(store)
    for q, message in (
        (Query(sort="size"), "cannot sort by 'size'"),
        (Query(state="sleeping"), "no run state 'sleeping'"),
        (Query(result="won"), "no result 'won'"),
        (Query(limit=0), "--limit must be at least 1"),
        (Query(parent="ZZZZZZZZ"), "no run 'ZZZZZZZZ'"),
    ):
        with pytest.raises(WeftError, match=message):
            store.search(q)


# -- deleting ------------------------------------------------------------------------------


def test_delete_run_removes_everything_the_run_owns(store):
    a, b = make_ids(2)

    def write(t):
        for rid in (a, b):
            t.put_run(run_record(rid, locks=[f"host:{rid}", "shared"]))
            t.put_plan(rid, {"steps": [{"id": "s"}]})
            t.put_step(rid, "s", {"attempts": 1, "state": "pending", "due": T0})
            t.append_events(rid, [{"n": 1}])
            t.put_lease(rid, {"pid": 1})
            t.put_request(rid, "cancel", {"kind": "cancel"})
            t.enqueue(rid, T0)
            t.put_lock(f"host:{rid}", rid)
        t.put_lock("shared", b)

    store.write(write)
    store.write(lambda t: t.delete_run(a))
    store.write(lambda t: t.delete_run(a))  # a second time changes nothing
    with store.read() as t:
        assert (t.run(a), t.plan(a), t.steps(a), t.events(a), t.lease(a), t.requests(a)) == (
            None,
            None,
            {},
            [],
            None,
            [],
        )
        assert t.queued(a) is None and list(t.run_ids()) == [b] and list(t.index("started")) == [b]
        assert t.locks() == {f"host:{b}": b, "shared": b}
        assert [tm.run for tm in t.due(float("inf"))] == [b] and t.due_runs(float("inf"), 9) == [b]
        assert t.last_seq(a) == 0 and t.problems() == []


def test_prune_removes_ended_run_trees_and_keeps_live_ones(store):
    old, kid, live, recent, held = make_ids(5)
    put_runs(
        store,
        run_record(old, state="succeeded", ended=T0 + 10),
        run_record(kid, state="failed", ended=T0 + 11, parent={"run": old, "step": "each", "index": 0}),
        run_record(live, state="succeeded", ended=T0 + 12),
        run_record(recent, state="succeeded", ended=T0 + 1000),
        run_record(held, state="cancelled", ended=T0 + 13),
    )
    live_kid = run_id(int((T0 + 20) * 1000), 0)
    put_runs(store, run_record(live_kid, state="paused", parent={"run": live, "step": "each", "index": 0}))
    store.write(lambda t: t.put_lease(held, {"pid": 1, "host": "elsewhere", "heartbeat": 4e9, "token": "x"}))
    done = prune(store, T0 + 100)
    assert (done.removed, done.sub_runs, done.kept) == (2, 1, 2)
    with store.read() as t:
        assert list(t.run_ids()) == sorted([live, recent, held, live_kid])
    with pytest.raises(WeftError, match="prune removes ended runs only"):
        prune(store, T0, "paused")


def test_open_store_picks_the_backend_by_path(tmp_path, monkeypatch):
    from weft.runtime.stores import store_dir
    from weft.runtime.stores.lmdb.store import Store as LmdbStore
    from weft.runtime.stores.memory import Store as MemoryStore

    monkeypatch.setenv("WEFT_STORE", "memory://from-env")
    assert store_dir(None) == "memory://from-env"
    assert store_dir(str(tmp_path / "x")) == str(tmp_path / "x")
    with open_store("memory://picked") as m, open_store(str(tmp_path / "disk")) as d:
        assert isinstance(m, MemoryStore) and isinstance(d, LmdbStore)
        assert (m.path, d.path) == ("memory://picked", str(tmp_path / "disk"))
