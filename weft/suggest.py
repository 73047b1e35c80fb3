""" "Did you mean ...?" for misspelt names (actions, steps, fields, parameters)."""

from __future__ import annotations

from typing import Iterable


def suggest(names: Iterable[str], wrong: str) -> str | None:
    """The known name closest to `wrong`, or None when nothing is close."""
    names = list(names)
    by_case = [n for n in names if n.lower() == wrong.lower()]
    if by_case:
        return by_case[0]
    import difflib  # only for a name that is wrong: not at every start-up

    close = difflib.get_close_matches(wrong, names, n=1, cutoff=0.6)
    return close[0] if close else None
