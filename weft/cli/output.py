"""Printing that never stops a run: once stdout is gone (a closed pipe, a dead terminal), the rest is discarded.

`weft run FILE | head -1` closes the pipe after the first line; the run must
still be driven to its end. `say` prints a line; on an output error it points
stdout at /dev/null for the rest of the process, so neither this line nor
any later print can raise.
"""

from __future__ import annotations

import os
import sys


def say(text: str) -> None:
    """Print `text` and a newline to stdout, flushed; output errors are swallowed and stdout discarded."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # EPIPE, EIO, ENOSPC; ValueError: stdout was closed
        discard()


def discard() -> None:
    """Send everything stdout gets from now on to /dev/null (what its buffer holds included)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout for the rest of the process
