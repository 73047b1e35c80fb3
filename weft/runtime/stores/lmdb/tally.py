"""How many of a run's step records are in each state, kept on write: the summary of a 50,000-step run's page
(`weft show`) then reads one small record instead of every step record.

    tallies  <run>  {state: step records in that state}

A run's tally begins with its Plan (`put_plan`: a new run) and every write of a step record moves one record
from the state it had to its new one, in the same transaction; the moves of a transaction are written once,
at its end (`settle`). A run stored before tallies were kept has none, and none is started for it: readers
count its step records instead (so they do too if a tally disagrees with the Plan's number of steps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weft.runtime.stores.lmdb import keys as K
from weft.runtime.stores.port import CorruptRecord

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.txn import Txn


class Tally:
    """The moves of step records between states in one write transaction, by run."""

    __slots__ = ("begun", "moves")

    def __init__(self) -> None:
        self.begun: set[str] = set()  # runs whose Plan this transaction wrote: their tallies start here
        self.moves: dict[str, dict[str, int]] = {}

    def move(self, run_id: str, before: str | None, after: str) -> None:
        """A step record of run `run_id` went from state `before` (None: a new record) to `after`."""
        if before == after:
            return
        moves = self.moves.get(run_id)
        if moves is None:
            moves = self.moves[run_id] = {}
        if before is not None:
            moves[before] = moves.get(before, 0) - 1
        moves[after] = moves.get(after, 0) + 1

    def add(self, run_id: str, state: str, n: int) -> None:
        """`n` new step records of run `run_id` in state `state`."""
        moves = self.moves.setdefault(run_id, {})
        moves[state] = moves.get(state, 0) + n

    def settle(self, t: Txn) -> None:
        """Write the tallies the moves changed (in `t`, before it commits)."""
        for run_id in self.begun | self.moves.keys():
            key = K.run_key(run_id)
            try:
                counts = {} if run_id in self.begun else t.get("tallies", key)
            except CorruptRecord:  # derived data: dropped, and readers count the step records (as step_counts)
                t.delete("tallies", key)
                continue
            if counts is None:  # a run stored before tallies were kept
                continue
            for state, n in self.moves.get(run_id, {}).items():
                counts[state] = counts.get(state, 0) + n
            if any(n < 0 for n in counts.values()):  # not the records' counts after all: readers count them
                t.delete("tallies", key)
                continue
            t.put("tallies", key, {state: n for state, n in sorted(counts.items()) if n})
