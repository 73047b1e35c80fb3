"""Reading literal tokens: numbers, durations and (interpolated) strings."""

from __future__ import annotations

import re

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_INT = re.compile(r"[0-9][0-9_]*")
_FLOAT = re.compile(r"[0-9][0-9_]*(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"([0-9][0-9_]*(?:\.[0-9]+)?)([A-Za-z_][A-Za-z_0-9]*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$", "0": "\0"}


def read_number(text: str) -> tuple[object, bool, tuple[str, str] | None]:
    """(value, is_duration, problem): problem is (message, hint) for a bad literal."""
    if _INT.fullmatch(text):
        return int(text.replace("_", "")), False, None
    if _FLOAT.fullmatch(text):
        return float(text.replace("_", "")), False, None
    m = _DURATION.fullmatch(text)
    if m:
        unit = m.group(2)
        if unit in UNITS:
            value = float(m.group(1).replace("_", "")) * UNITS[unit]
            return (int(value) if value == int(value) else value), True, None
        return (
            None,
            False,
            (
                f"invalid duration '{text}': unknown unit '{unit}'",
                "durations take one of the units ms, s, m, h, d (e.g. 30s, 2h)",
            ),
        )
    return None, False, (f"invalid number '{text}'", "numbers look like 42, 3.14 or 1e6")


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
