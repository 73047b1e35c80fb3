"""Reading literal tokens: numbers, durations and (interpolated) strings."""

from __future__ import annotations

import math
import re

from weft.compiler.limits import MAX_INT

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_INT = re.compile(r"[0-9][0-9_]*")
_FLOAT = re.compile(r"[0-9][0-9_]*(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"([0-9][0-9_]*(?:\.[0-9]+)?)([A-Za-z_][A-Za-z_0-9]*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$", "0": "\0"}


_TOO_LARGE = (
    "E123",
    "numbers are 64-bit: integers up to 9223372036854775807, floats up to about 1.8e308",
)


def read_number(text: str) -> tuple[object, bool, tuple[str, str, str] | None]:
    """(value, is_duration, problem): problem is (code, message, hint) for a bad literal:
    E002 for one that cannot be read, E123 for one out of range."""
    if _INT.fullmatch(text):
        digits = text.replace("_", "").lstrip("0")
        if len(digits) > len(str(MAX_INT)) or int(digits or "0") > MAX_INT:  # checked before int(): no digit limit
            return None, False, (_TOO_LARGE[0], f"integer {_short(text)} is too large", _TOO_LARGE[1])
        return int(digits or "0"), False, None
    if _FLOAT.fullmatch(text):
        value = float(text.replace("_", ""))
        if not math.isfinite(value):
            return None, False, (_TOO_LARGE[0], f"number {_short(text)} is too large", _TOO_LARGE[1])
        return value, False, None
    m = _DURATION.fullmatch(text)
    if m:
        unit = m.group(2)
        if unit in UNITS:
            value = float(m.group(1).replace("_", "")) * UNITS[unit]
            if not math.isfinite(value) or value > MAX_INT:
                return None, False, (_TOO_LARGE[0], f"duration {_short(text)} is too large", _TOO_LARGE[1])
            return (int(value) if value == int(value) else value), True, None
        return (
            None,
            False,
            (
                "E002",
                f"invalid duration '{_short(text)}': unknown unit '{_short(unit)}'",
                "durations take one of the units ms, s, m, h, d (e.g. 30s, 2h)",
            ),
        )
    return None, False, ("E002", f"invalid number '{_short(text)}'", "numbers look like 42, 3.14 or 1e6")


def _short(text: str, limit: int = 40) -> str:
    """A literal as a message quotes it: a long one is elided in the middle."""
    return text if len(text) <= limit else f"{text[:20]}...{text[-12:]} ({len(text)} characters)"


def read_string(token: str) -> tuple[str, list | None, list[tuple[int, int, str]]]:
    """Decode a quoted string token.

    Returns (plain text, pieces, problems). `pieces` is None when the string has
    no `${...}`; otherwise a list of literal str and (offset, source) pairs for
    each embedded expression, offsets counted from the token's first character.
    Problems are (offset, length, message).
    """
    body = token[1:-1]
    pieces: list = []
    problems: list[tuple[int, int, str]] = []
    buf: list[str] = []
    i = 0
    interpolated = False
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                buf.append(_ESCAPES[nxt])
            else:
                problems.append((i + 1, 2, f"unknown escape '\\{nxt}' in string"))
                buf.append(nxt)
            i += 2
        elif ch == "$" and body.startswith("${", i):
            end = _closing_brace(body, i + 2)
            if end < 0:
                problems.append((i + 1, 2, "'${' is not closed with '}'"))
                buf.append(body[i:])
                break
            interpolated = True
            if buf:
                pieces.append("".join(buf))
                buf = []
            pieces.append((i + 3, body[i + 2 : end]))
            i = end + 1
        else:
            buf.append(ch)
            i += 1
    if buf:
        pieces.append("".join(buf))
    if not interpolated:
        return "".join(p for p in pieces if isinstance(p, str)), None, problems
    return "", pieces, problems


def _closing_brace(body: str, start: int) -> int:
    """Index of the '}' closing a `${` (nested braces and quoted strings skipped)."""
    depth, i, quote = 0, start, None
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1
