"""`weft list` (filter, sort and page the runs of a store) and `weft prune` (delete old ended runs)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from weft.cli import views
from weft.client import Client, RunSummary

FILTERS = (
    "state",
    "result",
    "flow",
    "tag",
    "user",
    "schedule",
    "label",
    "parent",
    "lock",
)  # repeatable: any of the values


def _json(r: RunSummary) -> dict[str, Any]:
    parent = r.parent
    return {
        "id": r.id,
        "state": r.state,
        "flow": r.flow,
        "label": r.label,
        "tags": list(r.tags),
        "user": r.user,
        "parent": None if parent is None else {"run": parent.run, "step": parent.step, "index": parent.index},
        "locks": list(r.locks),
        "created": r.created,
        "started": r.started,
        "ended": r.ended,
        "progress": r.progress,
        "result": r.result,
        "error": r.error,
        "rolled_back": r.rolled_back,
        "outcome": r.outcome,
        "owner": None if r.owner is None else asdict(r.owner),
        "orphaned": r.orphaned,
        "due": r.due,
        "start_by": r.start_by,
        "schedule": None if r.schedule is None else asdict(r.schedule),
    }


def list_runs(args: Any) -> int:
    filters = {name: getattr(args, name) for name in FILTERS if getattr(args, name)}
    with Client(args.store) as client:
        page = client.runs(
            **filters,
            since=args.since,
            before=args.before,
            sort=args.sort,
            reverse=args.reverse,
            limit=args.limit,
            offset=args.offset,
            sub_runs=args.all,
        )
    if args.json:
        print(json.dumps([_json(r) for r in page.runs], indent=2))
    else:
        rows = [("RUN", "STATE", "FLOW", "USER", "PROGRESS", "STARTED", "TOOK", "LABEL")]
        for r in page.runs:
            rows.append(
                (
                    r.id,
                    views.state(r),
                    r.flow,
                    r.user or "",
                    f"{r.progress * 100:.0f}%",
                    views.stamp(r.created),
                    views.duration(r.started, r.ended),
                    r.label or "",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if page.more:
        print(f"more runs match: --offset {page.offset + page.limit} shows the next {page.limit}", file=sys.stderr)
    return 0


def prune(args: Any) -> int:
    with Client(args.store) as client:
        done = client.prune(args.older_than, args.state, batch=args.batch)
    subs = f" ({done.sub_runs} of them sub-runs)" if done.sub_runs else ""
    print(f"removed {done.removed} run{'s' * (done.removed != 1)}{subs} that ended before {views.stamp(done.cutoff)}")
    if done.kept:
        print(f"kept {done.kept} old run{'s' * (done.kept != 1)} with a sub-run that has not ended or is in use")
    return 0
