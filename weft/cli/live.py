"""The live progress display of a run on a terminal: transitions scroll above a bar per run and running step."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from weft.cli.output import discard
from weft.cli.views import clock, event_text
from weft.client import Progress

_STYLE = {"succeeded": "green", "failed": "red", "paused": "yellow", "skipped": "dim", "cancelled": "magenta"}


class LiveReport:
    """Transitions scroll above a progress bar for the run and one line per running step."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.console = Console()
        self.progress: Progress | None = None
        self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
        self.live.start()

    def __call__(self, progress: Progress) -> None:
        self.progress = progress
        try:
            for e in progress.events:
                if e.step and e.state == "running":
                    continue  # the live lines show what runs
                style = _STYLE.get(e.state or "", "")
                self.console.print(Text(f"{clock(e.t)} {event_text(e)}", style=style), highlight=False)
        except OSError:  # the terminal is gone: the run goes on without a display
            discard()

    def __rich__(self) -> Group:
        progress = self.progress
        if progress is None:
            return Group(Text(self.title))
        running, fractions, done = (
            progress.current() if progress.current else (progress.running, progress.fractions, progress.done)
        )
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self.title, style="bold"),
            ProgressBar(total=1.0, completed=done, width=40),
            Text(f"{done * 100:3.0f}%"),
        )
        rows = Table.grid(padding=(0, 1))
        for sid in running[:12]:
            f = fractions.get(sid)
            rows.add_row(
                Text(f"  {sid}", style="cyan"),
                ProgressBar(total=1.0, completed=f or 0.0, width=20),
                Text("" if f is None else f"{f * 100:3.0f}%"),
            )
        if len(running) > 12:
            rows.add_row(Text(f"  ... and {len(running) - 12} more"), Text(""), Text(""))
        return Group(head, rows)

    def close(self) -> None:
        self.live.stop()
