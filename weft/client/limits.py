"""The bounds on what people hand the Client, checked before anything is parsed deeply or stored.

- values (run inputs, skipped outputs, signal fields) nest at most MAX_DEPTH
  lists and records deep, checked without recursion, on texts before they are
  parsed as JSON too;
- an inputs file is at most MAX_FILE bytes, read in bounded chunks;
- names that become store keys (user names, lock names, filters of `runs`) are
  valid UTF-8 of at most MAX_NAME bytes;
- a page's limit is an integer from 1 and its offset from 0, to MAX_PAGE;
- a history seq or feed place to read after is an integer from 0 to MAX_PLACE;
- a moment a run is to start at lies from 1970 to the end of the year 9999, and
  its deadline to start within MAX_START_WITHIN of it;
- a schedule's interval, catch-up window, jitter and pause note are bounded
  (MIN_EVERY, MAX_EVERY, MAX_CATCHUP, MAX_JITTER, MAX_NOTE).

Each refusal is an InvalidInput naming the field and the limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from weft.client.errors import InvalidInput

MAX_DEPTH = 64  # levels of lists and records in one value
MAX_FILE = 16 * 1024 * 1024  # bytes of an --inputs file
MAX_NAME = 200  # UTF-8 bytes of a user name, a lock name or a filter value
MAX_LABEL = 2000  # UTF-8 bytes of a label given when a run starts
MAX_PAGE = 1_000_000  # --limit and --offset
MAX_NOTE = 2000  # characters of a schedule's pause note
MIN_EVERY = 1.0  # seconds between a schedule's slots, at least: a worker looks at its schedules once a second
MAX_EVERY = 366 * 86400.0  # seconds between a schedule's slots, at most
MAX_CATCHUP = 366 * 86400.0  # seconds a missed slot may be late and still fire
MAX_JITTER = 86400.0  # seconds each slot may start late
MAX_START_WITHIN = 366 * 86400.0  # seconds after its start time a delayed run may still start (start_before)
MAX_PLACE = 2**62  # a history seq or feed place given to read after
MAX_MOMENT = 253_402_300_799.0  # 9999-12-31T23:59:59Z, in seconds since the epoch
_CHUNK = 1 << 20


def _deep(field: str) -> InvalidInput:
    return InvalidInput(f"{field} nests deeper than {MAX_DEPTH} levels of lists and records", field=field)


def value(v: Any, field: str) -> None:
    """InvalidInput when `v` nests lists, tuples and dicts more than MAX_DEPTH levels deep, or holds a float that
    is not finite (NaN, inf: JSON has no such number; a JSON answer showed it as null, `--json` as no JSON)."""
    level = [v]
    for depth in range(MAX_DEPTH + 1):
        odd = next((x for x in level if isinstance(x, float) and not math.isfinite(x)), None)
        if odd is not None:
            raise InvalidInput(f"{field} holds {odd!r}, not a finite number", field=field)
        containers = [x for x in level if isinstance(x, (list, tuple, dict))]
        if not containers:
            return
        if depth == MAX_DEPTH:
            raise _deep(field)
        level = [x for c in containers for x in (c.values() if isinstance(c, dict) else c)]


def text(t: str, field: str) -> None:
    """InvalidInput when JSON text `t` opens more than MAX_DEPTH brackets at once (brackets in strings do not count)."""
    depth, in_string, escaped = 0, False, False
    for ch in t:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _deep(field)
        elif ch in "]}":
            depth -= 1


def read_json(path: str, field: str = "inputs") -> Any:
    """The JSON value in file `path` (at most MAX_FILE bytes, nested at most MAX_DEPTH levels)."""
    chunks: list[bytes] = []
    size = 0
    try:
        with open(path, "rb") as f:
            while size <= MAX_FILE:
                chunk = f.read(min(_CHUNK, MAX_FILE + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as e:
        raise InvalidInput(f"cannot read {field} from {path}: {e.strerror or e}", field=field) from None
    if size > MAX_FILE:
        raise InvalidInput(
            f"{path} is larger than {MAX_FILE // (1024 * 1024)} MiB, the most {field} may take", field=field
        )
    try:
        data = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"cannot read {field} from {path}: not UTF-8 text (byte {e.start})", field=field) from None
    text(data, field)
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"cannot read {field} from {path}: {e}", field=field) from None


def name(v: str, field: str, most: int = MAX_NAME) -> str:
    """`v` if it is valid UTF-8 text of 1 to `most` bytes; else InvalidInput naming `field`."""
    try:
        size = len(v.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} {v!r} is not valid UTF-8 text", field=field) from None
    if not size or size > most:
        raise InvalidInput(f"{field} must be 1 to {most} bytes of UTF-8 text, not {size}", field=field)
    return v


def page(v: Any, field: str, least: int = 0) -> Any:
    """`v` if it is an integer from `least` to MAX_PAGE; else InvalidInput naming `field`."""
    return _integer(v, field, least, MAX_PAGE)


def _integer(v: Any, field: str, least: int, most: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidInput(f"{field} must be an integer, not {type(v).__name__}", field=field)
    if not least <= v <= most:
        raise InvalidInput(f"{field} must be from {least} to {most:,}, not {v:,}", field=field)
    return v


def days(seconds: float) -> str:
    """A bound of whole days for a message: `1 day`, `366 days`."""
    n = seconds / 86400
    return f"{n:g} day" if n == 1 else f"{n:g} days"


def place(v: Any, field: str) -> int:
    """`v`, a history seq or feed place to read after: an integer from 0 to MAX_PLACE; else InvalidInput."""
    return _integer(v, field, 0, MAX_PLACE)


def count(text: str, field: str) -> int | None:
    """A count written as text, `N` or `all` (`--steps`, `?history=`): N, or None for all. InvalidInput naming
    `field` unless N is 0 to MAX_PAGE in ASCII digits (str.isdigit is also true of '²', which int() refuses)."""
    if text == "all":
        return None
    if text.isascii() and text.isdigit() and int(text) <= MAX_PAGE:
        return int(text)
    raise InvalidInput(f"{field} must be a number from 0 to {MAX_PAGE:,} or 'all', not {text!r}", field=field)


def moment(v: float, field: str) -> float:
    """`v` (seconds since the epoch) if it lies from 1970 to the end of the year 9999; else InvalidInput."""
    if not 0 <= v <= MAX_MOMENT:  # also NaN; the store keeps moments as unsigned microseconds
        raise InvalidInput(f"{field} must lie from 1970 to the year 9999, not {v!r} seconds after 1970", field=field)
    return v
