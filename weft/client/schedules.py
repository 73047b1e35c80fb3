"""The Client's schedules: add, list, show, pause, resume, trigger and remove (a part of the Client class).

A schedule starts runs of one compiled flow with fixed inputs (checked when
it is added) on a cron line in a time zone or every so long; workers and
`weft serve` fire its slots (weft.runtime.engine.schedules).

The rules of slots (weft.runtime.core.schedule: cron lines, time zones) are
imported by the methods that use them, so a Client that only runs flows never
loads them.
"""

from __future__ import annotations

import re
import time
from abc import abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from weft.client import inputs as checks
from weft.client import limits
from weft.client.errors import Conflict, InvalidInput, NotFound
from weft.errors import WeftError
from weft.runtime.stores.port import Store, StoreError, Txn

if TYPE_CHECKING:
    from weft.client.answers import Schedule

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_SHOWN = 5  # upcoming slot times a schedule shows


class Scheduling:
    """Schedules of one store (the Client's `path`)."""

    @abstractmethod
    def _open(self, create: bool = False) -> Store: ...

    def add_schedule(
        self,
        name: str,
        plan: dict,
        inputs: dict[str, Any] | None = None,
        *,
        texts: Iterable[str] = (),
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        start: float | None = None,
        until: float | None = None,
        max_runs: int | None = None,
        overlap: str = "skip",
        catchup: float = 60.0,
        jitter: float = 0.0,
        user: str,
    ) -> Schedule:
        """A new schedule of `plan`: a `cron` line (in time zone `tz`, default UTC) or `every` seconds from `start`.

        InvalidInput names the setting at fault (`cron`, `tz`...) or the input (`inputs.mac`).

        Runs start from `start` (default now) until `until`, at most `max_runs`
        of them. `overlap` says what a slot does while the schedule's last run
        is still going (skip, buffer-one, allow, cancel-other); slots missed
        while no worker served the store fire if they are at most `catchup`
        seconds old; each slot fires up to `jitter` seconds late.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                f"a schedule name is 1 to 100 letters, digits and _.:- starting with a letter or digit, not {name!r}",
                field="name",
            )
        try:
            given = checks.prepare(plan, inputs, texts, user)
        except InvalidInput as e:  # the inputs are one part of a schedule: name the input as inputs.NAME
            if e.field is not None and e.field not in ("user", "label", "lock"):
                e.field = f"inputs{'' if e.field.startswith('[') else '.'}{e.field}"
            raise
        now = time.time()
        rec = {
            "name": name,
            "plan": plan,
            "inputs": given.inputs,
            "label": given.label,
            "locks": given.locks,
            "user": given.user,
            "cron": cron,
            "every": every,
            "tz": _zone(tz),
            "start": now if start is None else start,
            "until": until,
            "max_runs": max_runs,
            "overlap": overlap,
            "catchup": catchup,
            "jitter": jitter,
            "paused": False,
            "note": None,
            "created": now,
            "fired": 0,
            "last_run": None,
            "last_slot": None,
            "buffered": None,
            "history": [],
        }
        from weft.runtime.core import schedule as rules

        _check(rec)
        rec["next_due"] = rules.next_due(rec)
        if rec["next_due"] is None:
            raise InvalidInput("the schedule has no slot before its until, or before the year 10000", field="start")

        def write(t: Txn) -> None:
            if t.schedule(name) is not None:
                raise Conflict(f"a schedule named {name!r} exists already (weft schedule remove {name} first)")
            t.put_schedule(rec)

        self._open(create=True).write(write)
        return self.schedule(name)

    def schedules(self) -> tuple[Schedule, ...]:
        """Every schedule of the store, by name."""
        now = time.time()
        with self._open().read() as t:
            return tuple(_shown(rec, now) for rec in t.schedules())

    def schedule(self, name: str) -> Schedule:
        """Schedule `name`: its settings, next slot times and what it did (its runs: `runs(schedule=name)`)."""
        with self._open().read() as t:
            rec = _find(t, name)
        return _shown(rec, time.time())

    def pause_schedule(self, name: str, note: str | None = None) -> Schedule:
        """Fire no slot of schedule `name` until it is resumed; `note` says why."""
        if note is not None and not (isinstance(note, str) and len(note) <= limits.MAX_NOTE):
            raise InvalidInput(f"a pause's note is text of at most {limits.MAX_NOTE:,} characters", field="note")
        return self._change(name, lambda rec, now: {**rec, "paused": True, "note": note, "next_due": None})

    def resume_schedule(self, name: str) -> Schedule:
        """Fire schedule `name` again, from its next slot after now (slots passed while paused do not fire)."""
        from weft.runtime.core import schedule as rules

        def resumed(rec: dict, now: float) -> dict:
            last = max(rec.get("last_slot") or rec["start"] - 1, now)
            rec = {**rec, "paused": False, "note": None, "last_slot": last}
            return {**rec, "next_due": rules.next_due(rec)}

        return self._change(name, resumed)

    def trigger_schedule(self, name: str) -> str:
        """Start one run of schedule `name` now, outside its slots; its id."""
        from weft.runtime.engine import schedules as engine

        def write(t: Txn) -> str:
            _find(t, name)
            try:
                return engine.trigger(t, name, time.time())
            except StoreError:
                raise
            except WeftError as e:  # a lock its run needs is held
                raise Conflict(str(e)) from None

        return self._open().write(write)

    def remove_schedule(self, name: str) -> None:
        """Remove schedule `name` (its runs stay)."""

        def write(t: Txn) -> None:
            _find(t, name)
            t.drop_schedule(name)

        self._open().write(write)

    def _change(self, name: str, change: Any) -> Schedule:
        self._open().write(lambda t: t.put_schedule(change(_find(t, name), time.time())))
        return self.schedule(name)


def _shown(rec: dict, now: float) -> Schedule:
    """Schedule record `rec` as the Client answers it, with its next slot times after `now`."""
    from weft.client.answers import schedule_of
    from weft.runtime.core import schedule as rules

    return schedule_of(rec, rules.upcoming(rec, now, _SHOWN))


def _find(t: Txn, name: str) -> dict:
    rec = t.schedule(name) if isinstance(name, str) and _NAME.fullmatch(name) else None  # ("": not a store key)
    if rec is None:
        raise NotFound(f"no schedule {name!r} (weft schedule list shows them)")
    return rec


def _zone(tz: str | None) -> str:
    if tz is None:
        return "UTC"
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"no time zone {tz!r} (an IANA name such as Europe/Prague)", field="tz") from None
    return tz


def _check(rec: dict) -> None:
    """InvalidInput naming the first setting of a schedule record that cannot work."""
    from weft.runtime.core import schedule as rules

    if (rec["cron"] is None) == (rec["every"] is None):
        raise InvalidInput("a schedule takes a cron line or an interval (every), one of them", field="cron")
    problem = None if rec["cron"] is None else rules.cron_problem(rec["cron"])
    if problem is not None:
        example = " (five fields, such as '0 3 * * *')" if problem == "not a cron line" else ""
        raise InvalidInput(f"{problem}: {rec['cron']!r}{example}", field="cron")
    if rec["every"] is not None and not limits.MIN_EVERY <= rec["every"] <= limits.MAX_EVERY:
        raise InvalidInput(
            f"every must be from {limits.MIN_EVERY:g} second to {limits.days(limits.MAX_EVERY)}, "
            f"not {rec['every']:g} seconds" + (" (a worker looks once a second)" if rec["every"] < 1 else ""),
            field="every",
        )
    if rec["overlap"] not in rules.OVERLAPS:
        raise InvalidInput(f"overlap takes {', '.join(rules.OVERLAPS)}, not {rec['overlap']!r}", field="overlap")
    if rec["max_runs"] is not None and rec["max_runs"] < 1:
        raise InvalidInput("max_runs must be at least 1", field="max_runs")
    limits.moment(rec["start"], "start")
    if rec["until"] is not None and limits.moment(rec["until"], "until") <= rec["start"]:
        raise InvalidInput("until must be after start", field="until")
    for field, most in (("catchup", limits.MAX_CATCHUP), ("jitter", limits.MAX_JITTER)):
        if not 0 <= rec[field] <= most:
            raise InvalidInput(
                f"{field} must be from 0 to {limits.days(most)}, not {rec[field]:g} seconds", field=field
            )
