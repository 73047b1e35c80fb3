"""Times and durations as people write them on the command line: `2h`, `1h30m`, `2026-12-24T03:00+01:00`."""

from __future__ import annotations

import re
import time
from datetime import datetime

from weft.errors import WeftError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def duration(text: str, option: str) -> float:
    """`30s`, `15m`, `1h30m`, `2d` as seconds (more than zero)."""
    text = text.strip()
    if not _DURATION.fullmatch(text):
        raise WeftError(f"{option} takes a duration such as 30s, 15m, 1h30m or 2d, not {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise WeftError(f"{option} must be longer than zero, not {text!r}")
    return seconds


def moment(text: str, option: str) -> float:
    """An ISO date or date and time (local time unless it says otherwise) as seconds since the epoch."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WeftError(
            f"{option} takes an ISO date and time such as 2026-12-24T03:00 or 2026-12-24T03:00+01:00, not {text!r}"
        ) from None
    from weft.runtime.stores.query import epoch  # (the store package is not for every command that reads a time)

    return epoch(when, text.strip(), option)


def start_time(at: str | None, within: str | None) -> float | None:
    """`--at WHEN` or `--in DURATION` as seconds since the epoch (None when neither is given)."""
    if at is not None and within is not None:
        raise WeftError("give --at or --in, not both")
    if at is not None:
        return moment(at, "--at")
    return None if within is None else time.time() + duration(within, "--in")


def shown(t: float) -> str:
    """A time for people: local, ISO, to the second."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
