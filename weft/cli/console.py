"""Showing a run while it is driven: plain lines, or a live progress display on a terminal.

Both are Client.drive observers, called after each commit with a Progress
holding the events it made durable, so every line printed is a transition
that is already on disk. Neither raises when its output is gone: the run is
driven on, unseen (output.py). The live display (live.py) is imported only for
a terminal: rich takes longer to import than most commands take to run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from weft.cli.output import say
from weft.cli.views import clock, event_text
from weft.client import Progress

if TYPE_CHECKING:
    from weft.cli.live import LiveReport


def reporter(title: str) -> PlainReport | LiveReport:
    """The observer that shows a run titled `title`: live on a terminal, else plain lines."""
    if sys.stdout.isatty():
        from weft.cli.live import LiveReport

        return LiveReport(title)
    return PlainReport()


class PlainReport:
    """One line per transition: `12:00:01 dhcp succeeded (0.2s)`."""

    def __call__(self, progress: Progress) -> None:
        if progress.events:
            say("\n".join(f"{clock(e.t)} {event_text(e)}" for e in progress.events))

    def close(self) -> None:
        pass
