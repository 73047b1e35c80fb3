"""The garbage collector while runs are driven in this process: what was there before is frozen, collections rarer.

A drive makes objects by the hundred thousand that live until their step
ends (10,000 HTTP calls in flight: their tasks, connections and parsers),
and the collector's default pace (a young collection every 700 allocations,
a full one whenever a quarter more objects survived) traversed them over and
over: six full collections, 0.4 s of a 2.7 s run. While any run is driven
here, the young generation collects every YOUNG allocations instead, and
what the process held when the first drive began (the plan, the machine,
what compiling left) is frozen out of the collector's sight; the last drive
to end puts both back. Cyclic garbage is still collected, only in bigger
batches; everything else is freed by reference counting as ever.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG = 50_000  # allocations between young collections while a drive runs (Python's default: 700)

_lock = threading.Lock()
_drives = 0
_before: tuple[tuple[int, ...], bool] | None = None  # the thresholds, and whether nobody had frozen, at the first drive


@contextmanager
def driving() -> Iterator[None]:
    """The collector's pace of a drive, for the block (drives may nest and run in several threads at once)."""
    global _drives, _before
    with _lock:
        _drives += 1
        if _drives == 1:
            _before = gc.get_threshold(), gc.get_freeze_count() == 0  # (else frozen already: `weft run` did)
            gc.set_threshold(max(YOUNG, _before[0][0]), *_before[0][1:])
        gc.freeze()  # what this drive begins with: its plan and machine
    try:
        yield
    finally:
        with _lock:
            _drives -= 1
            if _drives == 0 and _before is not None:
                thresholds, thaw = _before
                gc.set_threshold(*thresholds)
                if thaw:
                    gc.unfreeze()
                _before = None
