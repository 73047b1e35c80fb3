"""When a schedule fires: its slots, and what to do with those that came due. Pure: the clock is an argument.

A schedule's slots come from a cron line in a time zone (croniter; a wall
time that a daylight-saving change repeats is one slot, one it skips moves to
the next valid time) or from a fixed interval after its start. Slots before
`start` or after `until` do not exist; once `max_runs` runs were started no
slot fires. A slot comes due at its time plus its jitter, a fixed offset
within `jitter` seconds derived from the schedule's name and the slot, so
every worker agrees on it.

`decide` takes the schedule record and the time now and says, slot by slot
oldest first, what happens to each slot that came due since the last one
dealt with: slots older than the catch-up window are missed; the others fire
unless a run of the schedule is still going, when the overlap policy says:

- skip: the slot is skipped (and recorded as such);
- buffer-one: it waits for the running one to end (one slot waits at most;
  later ones are skipped);
- allow: it fires anyway;
- cancel-other: the running run is asked to cancel and the slot waits for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

OVERLAPS = ("skip", "buffer-one", "allow", "cancel-other")
MISSED_SHOWN = 1000  # missed slots counted one by one at most; beyond, the rest are counted as one entry
HISTORY = 50  # entries a schedule keeps of what it did


@dataclass(frozen=True)
class Act:
    """One thing to do for a slot: "fire", "skip", "miss", "wait" (buffered), or "cancel" (the running run)."""

    what: str
    slot: float
    note: str | None = None


@dataclass
class Decision:
    acts: list[Act] = field(default_factory=list)
    last_slot: float | None = None  # the newest slot dealt with
    buffered: float | None = None  # a slot waiting for the running run to end
    next_due: float | None = None  # when to look again (None: never, the schedule is over)


def _croniter() -> type:
    """croniter, imported on first use: it costs a process 4 MB, and most never read a cron line."""
    from croniter import croniter

    return croniter


def cron_problem(line: str) -> str | None:
    """Why `line` cannot be a schedule's cron line (not five valid fields; no day it fires, as 30 February), or
    None."""
    croniter = _croniter()
    fields = line.split()
    if not (len(fields) == 5 or (len(fields) == 1 and line.strip().startswith("@"))) or not croniter.is_valid(line):
        return "not a cron line"  # (croniter also takes a sixth field, of seconds: slots every second)
    try:
        croniter(line, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except (ValueError, OverflowError):  # (croniter's CroniterBadDateError is a ValueError)
        return "a cron line that never fires"
    return None


def slots(rec: dict, after: float, limit: int) -> Iterator[float]:
    """The schedule's slot times after `after` (within start..until), in order, at most `limit` of them."""
    start, until = rec["start"], rec.get("until")
    after = max(after, start - 1e-6)
    count = 0
    if rec.get("every"):
        every = rec["every"]
        k = int((after - start) // every) + 1 if after >= start else 0
        while count < limit:
            t = start + k * every
            if until is not None and t > until:
                return
            if t > after:
                yield t
                count += 1
            k += 1
        return
    tz = ZoneInfo(rec.get("tz") or "UTC")
    begun = datetime.fromtimestamp(after, tz)
    it = _croniter()(rec["cron"], begun)
    latest_wall = begun.replace(tzinfo=None)
    while count < limit:
        try:
            when = it.get_next(datetime)
        except (ValueError, OverflowError):  # past the year 9999, or no such day any more
            return
        wall = when.replace(tzinfo=None)
        if wall <= latest_wall:  # the hour a change back to standard time repeats: each wall time fires once
            continue
        latest_wall = wall
        t = when.timestamp()
        if until is not None and t > until:
            return
        if t > after:
            yield t
            count += 1


def jitter(rec: dict, slot: float) -> float:
    """The slot's fixed delay within [0, jitter) seconds."""
    spread = rec.get("jitter") or 0.0
    if spread <= 0:
        return 0.0
    digest = hashlib.sha256(f"{rec['name']}\0{slot!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * spread


def finished(rec: dict) -> bool:
    """No slot will fire again: `max_runs` runs were started."""
    return rec.get("max_runs") is not None and rec.get("fired", 0) >= rec["max_runs"]


def next_due(rec: dict, after: float | None = None) -> float | None:
    """When the next slot after the last one dealt with comes due (with its jitter), None if there is none."""
    if finished(rec):
        return None
    if rec.get("buffered") is not None:
        return rec["buffered"]
    base = rec.get("last_slot") if after is None else after
    for slot in slots(rec, rec["start"] - 1 if base is None else base, 1):
        return slot + jitter(rec, slot)
    return None


def upcoming(rec: dict, now: float, n: int = 5) -> list[float]:
    """The next `n` slot times not dealt with yet (nominal, without jitter), for people: from the first that
    would still fire at a worker's next look (one at the schedule's start fires at once)."""
    if finished(rec) or rec.get("paused"):
        return []
    if rec.get("max_runs") is not None:
        n = min(n, rec["max_runs"] - rec.get("fired", 0))
    base = rec["start"] - 1e-6 if rec.get("last_slot") is None else rec["last_slot"]
    window = (rec.get("catchup") or 0.0) + (rec.get("jitter") or 0.0) + 1.0  # slots `decide` still fires
    return list(slots(rec, max(base, now - window), n))


def decide(rec: dict, now: float, going: bool) -> Decision:
    """What to do at `now` with the slots that came due; `going`: a run the schedule started has not ended."""
    d = Decision(last_slot=rec.get("last_slot"), buffered=rec.get("buffered"))
    if rec.get("paused"):
        d.next_due = None
        return d
    fired = rec.get("fired", 0)
    limit = rec.get("max_runs")

    def fire(slot: float, note: str | None = None) -> None:
        nonlocal fired, going
        d.acts.append(Act("fire", slot, note))
        fired += 1
        going = True

    if d.buffered is not None and not going and (limit is None or fired < limit):
        fire(d.buffered, "after the run before it ended")
        d.buffered = None
    catchup = rec.get("catchup") or 0.0
    after = rec["start"] - 1 if d.last_slot is None else d.last_slot
    missed = 0
    for slot in slots(rec, after, MISSED_SHOWN + 10_000):
        if slot + jitter(rec, slot) > now:
            break
        d.last_slot = slot
        if limit is not None and fired >= limit:
            break
        if now - slot > catchup + (rec.get("jitter") or 0.0) + 1.0:  # (a second of slack for a worker's look)
            missed += 1
            if missed <= MISSED_SHOWN:
                d.acts.append(Act("miss", slot, "no worker was serving within the catch-up window"))
            continue
        if not going or rec["overlap"] == "allow":
            fire(slot)
        elif rec["overlap"] == "skip":
            d.acts.append(Act("skip", slot, "the run before it was still going"))
        elif d.buffered is None:
            if rec["overlap"] == "cancel-other":
                d.acts.append(Act("cancel", slot))
            d.acts.append(Act("wait", slot, "waits for the run before it to end"))
            d.buffered = slot
        else:
            d.acts.append(Act("skip", slot, "a slot already waits for the run before it"))
    if missed > MISSED_SHOWN:
        d.acts.append(Act("miss", d.last_slot, f"and {missed - MISSED_SHOWN} slots more"))
    after_rec = {**rec, "fired": fired, "last_slot": d.last_slot, "buffered": d.buffered}
    d.next_due = None if d.buffered is not None else next_due(after_rec)
    return d


def record(rec: dict, d: Decision, now: float, runs: dict[float, str]) -> dict:
    """The schedule record after `d` was carried out at `now`; `runs` names the run each fired slot started."""
    history = list(rec.get("history") or ())
    for act in d.acts:
        entry = {"slot": act.slot, "t": now, "what": act.what, "note": act.note}
        if act.what == "fire":
            entry["run"] = runs.get(act.slot)
        history.append(entry)
    fired = sum(1 for a in d.acts if a.what == "fire" and runs.get(a.slot))
    last_run = next((runs[a.slot] for a in reversed(d.acts) if a.what == "fire" and a.slot in runs), None)
    return {
        **rec,
        "last_slot": d.last_slot,
        "buffered": d.buffered,
        "fired": rec.get("fired", 0) + fired,
        "last_run": last_run or rec.get("last_run"),
        "history": history[-HISTORY:],
        "next_due": d.next_due,
    }


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
