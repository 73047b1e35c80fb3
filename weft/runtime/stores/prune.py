"""Deleting old runs: `weft prune --older-than 30d [--state succeeded]`, on any store.

Only runs that ended before the cutoff go, each with everything it owns
(`Txn.delete_run`) and its sub-runs (which go with their top run, never on
their own while it stays). A run tree with a sub-run that has not ended, or
that a live process holds, is kept whole. Deletions are made in transactions
of at most `batch` runs, sub-runs before their parent, so a prune stopped half
way leaves a consistent store to prune again. The feed's head entries that
name deleted runs go last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from weft.errors import WeftError
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.engine.lease import holder_alive
from weft.runtime.stores.port import Store, Txn

_FEED_BATCH = 10_000  # feed entries of deleted runs dropped per transaction


@dataclass
class Pruned:
    removed: int = 0  # runs deleted, sub-runs included
    sub_runs: int = 0  # of which sub-runs
    kept: int = 0  # old enough, but a sub-run has not ended or a live process holds one


def prune(store: Store, ended_before: float, state: str | None = None, batch: int = 500) -> Pruned:
    """Delete the runs that ended before `ended_before` (in `state`, if given) and their sub-runs."""
    if state is not None and state not in RUN_ENDED:
        raise WeftError(f"prune removes ended runs only: --state takes {', '.join(sorted(RUN_ENDED))}, not {state!r}")
    done = Pruned()
    order: list[str] = []  # run ids to delete, each after its sub-runs
    roots: set[str] = set()
    with store.read() as t:
        for rid in t.index("ended"):
            run = t.run(rid)
            if run is None:
                continue
            if run["ended"] >= ended_before:
                break
            if (state is not None and run["state"] != state) or _has_parent(t, run):
                continue
            tree = _tree(t, rid)
            if tree is None:
                done.kept += 1
            else:
                order += tree
                roots.add(rid)
    for i in range(0, len(order), batch):
        chunk = order[i : i + batch]
        removed = store.write(lambda t, chunk=chunk: [rid for rid in chunk if _delete(t, rid, time.time())])
        done.removed += len(removed)
        done.sub_runs += sum(rid not in roots for rid in removed)
    done.kept += len(roots) - (done.removed - done.sub_runs)
    while done.removed and store.write(lambda t: t.trim_feed(_FEED_BATCH)) == _FEED_BATCH:
        pass
    return done


def _has_parent(t: Txn, run: dict) -> bool:
    return bool(run.get("parent")) and t.run(run["parent"]["run"]) is not None


def _tree(t: Txn, rid: str) -> list[str] | None:
    """`rid` and every run below it, each after its sub-runs; None if one of them has not ended."""
    out: list[str] = []
    for child in _children(t, rid):
        run = t.run(child)
        below = _tree(t, child) if run is not None and run["state"] in RUN_ENDED else None
        if below is None:
            return None
        out += below
    return out + [rid]


def _children(t: Txn, rid: str) -> list[str]:
    return [child for _, child in t.children(rid)]


def _delete(t: Txn, rid: str, now: float) -> bool:
    """Delete one ended run that no live process holds and that has no sub-run left; whether it was."""
    run = t.run(rid)
    lease = t.lease(rid)
    if (
        run is None
        or run["state"] not in RUN_ENDED
        or (lease is not None and holder_alive(lease, now))
        or _children(t, rid)
    ):
        return False
    t.delete_run(rid)
    return True
