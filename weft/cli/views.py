"""Read-only views of stored runs: one run in full, its sub-runs, event lines (catalog.py lists runs)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from collections import Counter

from weft.runtime.engine import bulk
from weft.runtime.core.states import describe_error
from weft.runtime.stores.lmdb.store import Store, store_dir


def _waiting(spec: dict, rec: dict) -> str:
    """What a suspended step waits for: its next poll, or a signal; and until when."""
    poll = rec.get("poll")
    if poll is not None:
        done = "" if poll["progress"] is None else f", {poll['progress'] * 100:.0f}% done"
        text = f"polling ({poll['polls']} polls{done}), next at {clock(rec.get('due'))}"
    elif spec["kind"] == "wait":
        text = f"signal '{spec['wait']['signal']}'"
    else:
        text = "an external event"
    deadline = rec.get("deadline")
    return text + (f", times out at {clock(deadline)}" if deadline else "")


def clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def stamp(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    secs = end - start
    return f"{secs:.1f}s" if secs < 60 else f"{int(secs // 60)}m{int(secs % 60):02d}s"


def event_text(e: dict) -> str:
    """One history event as `dhcp succeeded (0.2s)`."""
    who = e.get("step") or "run"
    if "log" in e:
        return f"{who} | {e['log']}"
    if "note" in e:
        return f"{who}: {e['note']}" if e.get("step") else e["note"]
    state, detail = e["state"], e.get("detail")
    if state == "running" and e.get("attempt", 1) > 1:
        detail = f"attempt {e['attempt']}"
    if state == "pending" and detail and detail.startswith("retry"):
        return f"{who} failed, {detail}"
    if state in ("failed", "undo failed", "paused") and detail:
        return f"{who} {state}: {detail}"
    return f"{who} {state}" + (f" ({detail})" if detail else "")


# -- one run ---------------------------------------------------------------------------------


@dataclass
class RunView:
    """One stored run with everything `weft show` prints."""

    run: dict
    plan: dict
    steps: dict[str, dict]
    history: list[tuple[int, dict]]
    lease: dict | None
    children: dict[str, list[dict]] = field(default_factory=dict)  # each step -> its sub-runs, by item


def load(store: Store, text: str) -> RunView:
    """Run `text` (an id or a unique prefix), read in one transaction."""
    with store.read() as t:
        run_id = t.find_run(text)
        plan = t.plan(run_id)
        children = {
            s["id"]: [t.run(rid) for _, rid in t.children(run_id, s["id"])]
            for s in plan["steps"]
            if s["kind"] == "each"
        }
        return RunView(t.run(run_id), plan, t.steps(run_id), t.events(run_id), t.lease(run_id), children)


def run_json(v: RunView) -> dict[str, Any]:
    """Everything `weft show --json` prints."""
    subs = {
        sid: {
            "sub_runs": [{k: r[k] for k in ("id", "state", "label", "parent")} for r in runs],
            "sub_run_progress": bulk.progress(v.steps[sid], runs),
        }
        for sid, runs in v.children.items()
    }
    return {
        **v.run,
        "owner": None if v.lease is None else {k: v.lease[k] for k in ("pid", "host", "heartbeat")},
        "steps": [
            {"id": s["id"], "phase": s["phase"], "origin": s["origin"], **v.steps[s["id"]], **subs.get(s["id"], {})}
            for s in v.plan["steps"]
        ],
        "history": [{"seq": seq, **e} for seq, e in v.history],
    }


def run_text(v: RunView) -> str:
    """`weft show`: the run's fields, a table of its steps, its sub-runs, its history."""
    run, plan, steps, history, lease = v.run, v.plan, v.steps, v.history, v.lease
    state = run["state"] + (" (rolled back)" if run["rolled_back"] else "")
    lines = [
        f"run      {run['id']}",
        f"flow     {run['flow']}" + (f"  ({run['file']})" if run.get("file") else ""),
        f"label    {run['label'] or '-'}",
        f"state    {state}   progress {run['progress'] * 100:.0f}%",
        f"user     {run['user']}   tags {', '.join(run['tags']) or '-'}",
        f"created  {stamp(run['created'])}   ended {stamp(run['ended'])}"
        + (f"   took {duration(run['started'], run['ended'])}" if run["ended"] else ""),
    ]
    if lease is not None:
        lines.append(f"owner    pid {lease['pid']} on {lease['host']}")
    if run["inputs"]:
        lines.append("inputs   " + ", ".join(f"{k}={_short(v)}" for k, v in run["inputs"].items()))
    if run["result"] is not None:
        lines.append("result   " + ", ".join(f"{k}={_short(v)}" for k, v in run["result"].items()))
    if run["error"]:
        lines.append(f"error    {run['error']}")
    rows = [("STEP", "PHASE", "STATE", "TRIES", "STARTED", "TOOK", "ERROR / WAITING FOR")]
    for spec in plan["steps"]:
        rec = steps[spec["id"]]
        error = describe_error(rec["error"]) if rec["state"] in ("failed", "skipped", "pending") else ""
        if rec["undo"] and rec["undo"].get("state") == "failed":
            error = "undo: " + describe_error(rec["undo"]["error"])
        if rec["state"] == "suspended":
            error = _waiting(spec, rec)
        rows.append(
            (
                spec["id"],
                spec["phase"],
                rec["state"],
                str(rec["attempts"]),
                clock(rec["started"]),
                duration(rec["started"], rec["ended"]) if rec["state"] != "running" else "",
                error,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + ("  " + r[6] if r[6] else "") for r in rows]
    origins = [(s["id"], s["origin"]) for s in plan["steps"] if s["origin"]]
    if origins:
        lines += ["", "steps from extensions"]
        lines += [f"  {sid}  {_path(o['extension'])}:{o['line']}" for sid, o in origins]
    for sid, runs in v.children.items():
        counts = ", ".join(f"{n} {state}" for state, n in sorted(Counter(r["state"] for r in runs).items()))
        done = bulk.progress(steps[sid], runs)
        lines += [
            "",
            f"sub-runs of {sid}: {counts or 'none yet'} "
            f"({done['done']} done, {done['failed']} failed, {done['total']} in all)",
        ]
        shown = runs if len(runs) <= 20 else [r for r in runs if r["state"] != "succeeded"][:50]
        lines += [
            f"  {r['parent']['index'] + 1:>4}  {r['id']}  {r['state']:<9}  {r['label'] or ''}".rstrip() for r in shown
        ]
        if len(shown) < len(runs):
            lines.append(f"  (weft list --parent {run['id']} lists all {len(runs)})")
    lines += ["", "history"]
    lines += [f"{seq:>5}  {clock(e['t'])}  {event_text(e)}" for seq, e in history]
    return "\n".join(line.rstrip() for line in lines)


def _path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def load_run_view(store: str | None, run_id_or_prefix: str) -> tuple[dict, dict[str, str], dict[str, dict[str, int]]]:
    """(plan, {step id: state}, {each step id: {state: sub-runs}}) of a stored run, to draw it coloured by state.

    `store` is a store folder, or None for the default ($WEFT_STORE, else ./.weft).
    """
    with Store(store_dir(store), create=False) as store:
        with store.read() as t:
            run_id = t.find_run(run_id_or_prefix)
            plan, steps = t.plan(run_id), t.steps(run_id)
            return plan, {sid: rec["state"] for sid, rec in steps.items()}, bulk.each_counts(t, run_id, plan, steps)
