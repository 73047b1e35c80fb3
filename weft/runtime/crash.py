"""Named crash points for durability tests: `WEFT_CRASH_AT=name[:n]` exits the process
abruptly (`os._exit(137)`, like SIGKILL) the n-th time (default: first) `name` is reached.

Points: before-commit, after-action-before-commit, after-commit (see driver.py).
"""

from __future__ import annotations

import os

_name, _, _nth = os.environ.get("WEFT_CRASH_AT", "").partition(":")
_left = [int(_nth) if _nth.isdigit() else 1]


def crash_point(name: str) -> None:
    if name == _name:
        _left[0] -= 1
        if _left[0] == 0:
            os._exit(137)
