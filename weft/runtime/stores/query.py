"""What `weft list` asks a store for (Query) and what it gets back (Page), the same for every backend.

A backend answers a Query with the runs that match every filter, in the sort
order, with run ids breaking ties: `started` and `ended` sort newest first
(`reverse` turns any order around), runs that have not ended come last when
sorting by `ended`, and a label sorts by its first LABEL_KEY_MAX bytes.
`fits` and `order` state those rules on plain records; a backend with indexes
must give the same answers without decoding every run.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

from weft.errors import WeftError
from weft.runtime.core.states import RUN_STATES, outcome

SORTS = ("started", "ended", "flow", "state", "user", "label")
NEWEST_FIRST = frozenset({"started", "ended"})
RESULTS = ("succeeded", "failed", "cancelled", "rolled back")
LABEL_KEY_MAX = 400  # bytes of a label that its sort order looks at
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


@dataclass(frozen=True)
class Query:
    """What `weft list` asks for; times are seconds since the epoch, `before` excluded.

    `parent` is a run id or unique prefix; `lock` matches the live run holding that lock.
    """

    state: str | None = None
    result: str | None = None
    flow: str | None = None
    tag: str | None = None
    user: str | None = None
    schedule: str | None = None  # runs a schedule started
    label: str | None = None
    parent: str | None = None
    lock: str | None = None
    since: float | None = None
    before: float | None = None
    sort: str = "started"
    reverse: bool = False
    limit: int = 50
    offset: int = 0
    sub_runs: bool = False  # include the sub-runs of `each` steps (always with `parent`)


@dataclass
class Page:
    """The runs from `offset` on, at most the query's `limit`; `total` runs match in all."""

    runs: list[dict]
    total: int
    offset: int = 0

    @property
    def more(self) -> bool:
        """More runs match after this page."""
        return self.offset + len(self.runs) < self.total


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """`2h`, `1d12h`, `30m` (that long ago) or an ISO date or datetime (local time unless it says)."""
    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise WeftError(f"{option} takes a duration (30m, 2h, 7d) or an ISO date or datetime, not {text!r}") from None
    return epoch(when, text, option)


def epoch(when: datetime, text: str, option: str) -> float:
    """Seconds since the epoch of `when` (parsed from `text`; local time unless it says), or a WeftError naming
    `option` for a time the platform's clock cannot hold (a local time of the year 1)."""
    try:
        return when.timestamp()
    except (ValueError, OverflowError):
        raise WeftError(f"{option} must lie from 1970 to the year 9999, not {text!r}") from None


def result_name(text: str) -> str:
    """A `--result` value in stored form: `rolled-back` and `rolled_back` mean `rolled back`."""
    name = text.strip().lower().replace("-", " ").replace("_", " ")
    if name not in RESULTS:
        raise WeftError(f"no result {text!r} (results: succeeded, failed, cancelled, rolled-back)")
    return name


def check(q: Query) -> None:
    """WeftError naming the first option of `q` that no store can answer."""
    if q.sort not in SORTS:
        raise WeftError(f"cannot sort by {q.sort!r} (choose from {', '.join(SORTS)}; --reverse reverses)")
    if q.state is not None and q.state not in RUN_STATES:
        raise WeftError(f"no run state {q.state!r} (states: {', '.join(RUN_STATES)})")
    if q.result is not None and q.result not in RESULTS:
        raise WeftError(f"no result {q.result!r} (results: {', '.join(RESULTS)})")
    if q.limit < 1 or q.offset < 0:
        raise WeftError("--limit must be at least 1 and --offset at least 0")


def micros(t: float) -> int:
    """A time as the whole microseconds that stores order by."""
    return max(0, int(t * 1_000_000))


def fits(run: dict, q: Query) -> bool:
    """Whether `run` passes every filter of `q` but `parent` and `lock` (which name sets of runs)."""
    needle = q.label.casefold() if q.label is not None else None
    return (
        (q.sub_runs or q.parent is not None or not run.get("parent"))
        and (q.state is None or run["state"] == q.state)
        and (q.result is None or outcome(run) == q.result)
        and (q.flow is None or run["flow"] == q.flow)
        and (q.tag is None or q.tag in (run.get("tags") or ()))
        and (q.user is None or run.get("user") == q.user)
        and (q.schedule is None or (run.get("schedule") or {}).get("name") == q.schedule)
        and (needle is None or needle in (run.get("label") or "").casefold())
        and (q.since is None or run["created"] >= q.since)
        and (q.before is None or run["created"] < q.before)
    )


def sort_key(run: dict, field: str) -> tuple:
    """Where `run` goes in `field`'s order (ascending; a run that has not ended sorts by its start)."""
    if field in NEWEST_FIRST:
        ended = run.get("ended")
        return micros(ended if field == "ended" and ended is not None else run["created"]), run["id"]
    value = (run.get(field) or "").encode()
    return (value[:LABEL_KEY_MAX] if field == "label" else value), run["id"]


def order(runs: list[dict], q: Query) -> list[dict]:
    """`runs` in the query's sort order."""
    desc = (q.sort in NEWEST_FIRST) != q.reverse
    runs = sorted(runs, key=lambda r: sort_key(r, q.sort), reverse=desc)
    if q.sort == "ended":  # runs that have not ended come last, either way
        runs = [r for r in runs if r.get("ended") is not None] + [r for r in runs if r.get("ended") is None]
    return runs
