"""When schedules fire (weft.runtime.core.schedule), with the clock passed in: slots, limits, overlap, catch-up."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.runtime.core import schedule as rules

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
PRAGUE = ZoneInfo("Europe/Prague")


def sched(**fields) -> dict:
    rec = {
        "name": "s",
        "cron": None,
        "every": 60.0,
        "tz": "UTC",
        "start": T0,
        "until": None,
        "max_runs": None,
        "overlap": "skip",
        "catchup": 60.0,
        "jitter": 0.0,
        "paused": False,
        "fired": 0,
        "last_slot": None,
        "buffered": None,
        "last_run": None,
    }
    rec.update(fields)
    return rec


def local(t: float) -> str:
    return datetime.fromtimestamp(t, PRAGUE).isoformat()


def acts(d: rules.Decision) -> list[tuple[str, float]]:
    return [(a.what, a.slot) for a in d.acts]


def after(rec: dict, d: rules.Decision, runs: dict[float, str] | None = None) -> dict:
    """The record once `d` was carried out, each fired slot starting a run."""
    runs = runs if runs is not None else {a.slot: f"run{int(a.slot)}" for a in d.acts if a.what == "fire"}
    return rules.record(rec, d, 0.0, runs)


def test_interval_slots_start_at_start_and_stop_at_until():
    rec = sched(every=60.0, until=T0 + 180)
    assert list(rules.slots(rec, T0 - 1, 10)) == [T0, T0 + 60, T0 + 120, T0 + 180]
    assert list(rules.slots(rec, T0 + 60, 10)) == [T0 + 120, T0 + 180]
    assert list(rules.slots(rec, T0 + 61, 1)) == [T0 + 120]


def test_cron_slots_in_a_time_zone():
    start = datetime(2027, 1, 15, 0, 0, tzinfo=PRAGUE).timestamp()
    rec = sched(cron="30 3 * * *", every=None, tz="Europe/Prague", start=start)
    found = [local(t) for t in rules.slots(rec, start, 2)]
    assert found == ["2027-01-15T03:30:00+01:00", "2027-01-16T03:30:00+01:00"]


def test_a_daily_slot_fires_once_across_both_daylight_saving_changes():
    start = datetime(2027, 3, 27, 12, 0, tzinfo=PRAGUE).timestamp()  # spring forward on the 28th, 02:00 -> 03:00
    rec = sched(cron="30 2 * * *", every=None, tz="Europe/Prague", start=start)
    spring = [local(t) for t in rules.slots(rec, start, 3)]
    assert spring == ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00", "2027-03-30T02:30:00+02:00"]
    start = datetime(2027, 10, 30, 12, 0, tzinfo=PRAGUE).timestamp()  # fall back on the 31st: 02:30 twice
    rec = sched(cron="30 2 * * *", every=None, tz="Europe/Prague", start=start)
    autumn = [local(t) for t in rules.slots(rec, start, 2)]
    assert autumn == ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]


def test_an_hourly_slot_in_the_repeated_hour_fires_once():
    start = datetime(2027, 10, 31, 0, 30, tzinfo=PRAGUE).timestamp()
    rec = sched(cron="0 * * * *", every=None, tz="Europe/Prague", start=start)
    hours = [local(t) for t in rules.slots(rec, start, 4)]
    assert hours == [
        "2027-10-31T01:00:00+02:00",
        "2027-10-31T02:00:00+02:00",
        "2027-10-31T03:00:00+01:00",
        "2027-10-31T04:00:00+01:00",
    ]


def test_several_times_in_the_repeated_hour_each_fire_once_however_the_slots_are_read():
    start = datetime(2027, 10, 30, 12, 0, tzinfo=PRAGUE).timestamp()  # fall back on the 31st: 02:00-03:00 twice
    rec = sched(cron="0,30 2 * * *", every=None, tz="Europe/Prague", start=start)
    found = [local(t) for t in rules.slots(rec, start, 3)]  # 02:00+01:00 and 02:30+01:00 fired again before
    assert found == ["2027-10-31T02:00:00+02:00", "2027-10-31T02:30:00+02:00", "2027-11-01T02:00:00+01:00"]
    rec, fired = sched(cron="0,30 2 * * *", every=None, tz="Europe/Prague", start=start, catchup=3600.0), []
    for minutes in range(0, 60 * 48, 7):  # a worker's looks, one slot dealt with at a time
        d = rules.decide(rec, start + minutes * 60, going=False)
        fired += [local(a.slot) for a in d.acts if a.what == "fire"]
        rec = after(rec, d)
    assert fired == found + ["2027-11-01T02:30:00+01:00"]


def test_the_first_slot_of_an_interval_is_shown_next_as_it_fires_at_once():
    rec = sched(every=3600.0)  # made at its start: its first slot is its start ("next at" showed an hour on)
    assert rules.upcoming(rec, T0 + 0.2, 2) == [T0, T0 + 3600]
    assert acts(rules.decide(rec, T0 + 0.2, going=False)) == [("fire", T0)]
    assert rules.upcoming(sched(every=3600.0, start=T0 - 86400), T0, 1) == [T0]  # not the slots missed long ago
    assert rules.upcoming(after(rec, rules.decide(rec, T0 + 0.2, going=False)), T0 + 0.3, 1) == [T0 + 3600]


def test_a_cron_line_that_never_fires_is_told_apart_from_one_that_is_not_a_cron_line():
    assert rules.cron_problem("0 0 30 2 *") == "a cron line that never fires"
    assert rules.cron_problem("61 * * * *") == rules.cron_problem("* * * * * *") == "not a cron line"
    assert rules.cron_problem("* * * * * * *") == "not a cron line"  # (a sixth field was taken: seconds)
    assert rules.cron_problem("@daily") is rules.cron_problem("*/15 * * * *") is None
    assert rules.cron_problem("0 0 29 2 *") is None  # (leap years)
    late = sched(cron="0 * * * *", every=None, start=253_402_300_000.0)  # 9999-12-31T23:46:40Z
    assert list(rules.slots(late, late["start"], 3)) == []  # (OverflowError before)


def test_a_due_slot_fires_and_the_next_is_due_a_period_later():
    rec = sched()
    assert rules.next_due(rec) == T0
    d = rules.decide(rec, T0 + 0.5, going=False)
    assert acts(d) == [("fire", T0)] and d.last_slot == T0 and d.next_due == T0 + 60
    rec = after(rec, d)
    assert rec["fired"] == 1 and rec["last_run"] == f"run{int(T0)}" and rec["next_due"] == T0 + 60
    assert acts(rules.decide(rec, T0 + 59, going=False)) == []  # nothing due: nothing done, twice over


def test_max_runs_stops_the_schedule():
    rec = sched(max_runs=2)
    for n in range(2):
        d = rules.decide(rec, T0 + 60 * n, going=False)
        assert acts(d) == [("fire", T0 + 60 * n)]
        rec = after(rec, d)
    assert rules.finished(rec) and rec["next_due"] is None
    assert acts(rules.decide(rec, T0 + 600, going=False)) == []
    assert rules.upcoming(rec, T0 + 600) == []


def test_until_ends_the_slots():
    rec = sched(until=T0 + 60, overlap="allow")
    rec = after(rec, rules.decide(rec, T0 + 60, going=False))
    assert rec["fired"] == 2 and rec["next_due"] is None


@pytest.mark.parametrize(
    "overlap, expected, buffered",
    [
        ("skip", [("skip", T0 + 60)], None),
        ("allow", [("fire", T0 + 60)], None),
        ("buffer-one", [("wait", T0 + 60)], T0 + 60),
        ("cancel-other", [("cancel", T0 + 60), ("wait", T0 + 60)], T0 + 60),
    ],
)
def test_overlap_policies_while_the_last_run_is_going(overlap, expected, buffered):
    rec = after(sched(overlap=overlap), rules.decide(sched(overlap=overlap), T0, going=False))
    d = rules.decide(rec, T0 + 60, going=True)
    assert acts(d) == expected and d.buffered == buffered


def test_a_buffered_slot_fires_once_the_run_before_it_ends_and_only_one_waits():
    rec = sched(overlap="buffer-one")
    rec = after(rec, rules.decide(rec, T0, going=False))
    d = rules.decide(rec, T0 + 60, going=True)
    rec = after(rec, d)
    d = rules.decide(rec, T0 + 120, going=True)
    assert acts(d) == [("skip", T0 + 120)] and d.buffered == T0 + 60  # one slot waits at most
    rec = after(rec, d)
    d = rules.decide(rec, T0 + 130, going=False)
    assert acts(d) == [("fire", T0 + 60)] and d.buffered is None
    assert after(rec, d)["fired"] == 2


def test_catch_up_fires_recent_missed_slots_oldest_first_and_records_older_ones_as_missed():
    rec = sched(every=1.0, catchup=3.0, overlap="allow")
    rec = after(rec, rules.decide(rec, T0, going=False))  # slot T0 fired, then no worker for 10 s
    d = rules.decide(rec, T0 + 10, going=False)
    missed = [s for w, s in acts(d) if w == "miss"]
    fired = [s for w, s in acts(d) if w == "fire"]
    # slots more than catchup (+ a second of slack) old are missed; newer ones fire, oldest first
    assert missed == [T0 + k for k in range(1, 6)]
    assert fired == [T0 + k for k in range(6, 11)]
    assert d.last_slot == T0 + 10


def test_catch_up_under_skip_fires_the_first_missed_slot_and_skips_the_rest():
    rec = sched(every=1.0, catchup=3.0)
    rec = after(rec, rules.decide(rec, T0, going=False))
    d = rules.decide(rec, T0 + 4, going=False)
    assert acts(d) == [("fire", T0 + 1), ("skip", T0 + 2), ("skip", T0 + 3), ("skip", T0 + 4)]


def test_a_paused_schedule_does_nothing():
    d = rules.decide(sched(paused=True), T0 + 600, going=False)
    assert acts(d) == [] and rules.upcoming(sched(paused=True), T0) == []


def test_a_slot_whose_run_could_not_start_is_not_counted():
    rec = sched()
    d = rules.decide(rec, T0, going=False)
    rec = after(rec, d, runs={})  # the fire was refused (a lock held): recorded, not counted
    assert rec["fired"] == 0 and rec["last_slot"] == T0 and rec["last_run"] is None


@given(st.floats(min_value=1.0, max_value=600.0), st.floats(min_value=0, max_value=1e6), st.text(min_size=1))
def test_jitter_is_within_bounds_and_the_same_for_every_worker(spread, offset, name):
    rec = sched(name=name, jitter=spread)
    slot = T0 + offset
    j = rules.jitter(rec, slot)
    assert 0.0 <= j < spread and j == rules.jitter(dict(rec), slot)


def test_a_jittered_slot_comes_due_late_by_its_jitter():
    rec = sched(jitter=30.0)
    delay = rules.jitter(rec, T0)
    assert rules.next_due(rec) == T0 + delay
    assert acts(rules.decide(rec, T0 + delay - 0.01, going=False)) == []
    assert acts(rules.decide(rec, T0 + delay, going=False)) == [("fire", T0)]
