"""`weft list` (filter, sort and page the runs of a store) and `weft prune` (delete old ended runs)."""

from __future__ import annotations

import json
import sys
from typing import Any

from weft.runtime.stores.lmdb import catalog
from weft.cli import views
from weft.runtime.stores.lmdb.prune import prune as prune_runs
from weft.runtime.core.states import outcome
from weft.runtime.stores.lmdb.store import Store, ignore_file_size_signal, store_dir

_FIELDS = (
    "id",
    "state",
    "flow",
    "label",
    "tags",
    "user",
    "parent",
    "locks",
    "created",
    "started",
    "ended",
    "progress",
    "result",
    "error",
    "rolled_back",
)


def _store(option: str | None) -> Store:
    ignore_file_size_signal()
    return Store(store_dir(option), create=False)


def query(args: Any) -> catalog.Query:
    """The Query that `weft list`'s options ask for; `--sort -FIELD` reverses like `--reverse`."""
    sort = args.sort
    return catalog.Query(
        state=args.state,
        result=None if args.result is None else catalog.result_name(args.result),
        flow=args.flow,
        tag=args.tag,
        user=args.user,
        label=args.label,
        parent=args.parent,
        lock=args.lock,
        since=None if args.since is None else catalog.parse_when(args.since, "--since"),
        before=None if args.before is None else catalog.parse_when(args.before, "--before"),
        sort=sort.lstrip("-"),
        reverse=args.reverse != sort.startswith("-"),
        limit=args.limit,
        offset=args.offset,
        sub_runs=args.all,
    )


def list_runs(args: Any) -> int:
    q = query(args)
    with _store(args.store) as store:
        page = catalog.search(store, q)
    if args.json:
        print(json.dumps([{**{k: r.get(k) for k in _FIELDS}, "outcome": outcome(r)} for r in page.runs], indent=2))
    else:
        rows = [("RUN", "STATE", "FLOW", "USER", "PROGRESS", "STARTED", "TOOK", "LABEL")]
        for r in page.runs:
            state = r["state"] + (" (rolled back)" if r["rolled_back"] else "")
            rows.append(
                (
                    r["id"],
                    state,
                    r["flow"],
                    r["user"],
                    f"{r['progress'] * 100:.0f}%",
                    views.stamp(r["created"]),
                    views.duration(r["started"], r["ended"]),
                    r["label"] or "",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if page.more:
        print(f"more runs match: --offset {q.offset + q.limit} shows the next {q.limit}", file=sys.stderr)
    return 0


def prune(args: Any) -> int:
    cutoff = catalog.parse_when(args.older_than, "--older-than")
    with _store(args.store) as store:
        done = prune_runs(store, cutoff, args.state, batch=args.batch)
    subs = f" ({done.sub_runs} of them sub-runs)" if done.sub_runs else ""
    print(f"removed {done.removed} run{'s' * (done.removed != 1)}{subs} that ended before {views.stamp(cutoff)}")
    if done.kept:
        print(f"kept {done.kept} old run{'s' * (done.kept != 1)} with a sub-run that has not ended or is in use")
    return 0
