"""Read-only views of stored runs: listing through the indexes, one run in full, event lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from collections import Counter

from weft.errors import WeftError
from weft.runtime.states import RUN_STATES, describe_error
from weft.runtime.store import Store, Txn, store_dir

SORTS = ("started", "ended", "flow", "state")


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


# -- listing -----------------------------------------------------------------------------


def list_runs(store: Store, *, state: str | None = None, flow: str | None = None, tag: str | None = None,
              sort: str = "started", limit: int = 50) -> list[dict]:
    """Runs matching every filter, sorted; candidates come from one index, never a scan of all runs."""
    reverse = sort.startswith("-")
    field = sort.lstrip("-")
    if field not in SORTS:
        raise WeftError(f"cannot sort by {field!r} (choose from {', '.join(SORTS)}; prefix '-' to reverse)")
    if state is not None and state not in RUN_STATES:
        raise WeftError(f"no run state {state!r} (states: {', '.join(RUN_STATES)})")
    filters = [(k, v) for k, v in (("state", state), ("flow", flow), ("tag", tag)) if v is not None]
    with store.read() as t:
        if not filters:
            newest_first = (field in ("started", "ended")) != reverse
            runs = []
            for run_id in t.index(field, reverse=newest_first):
                runs.append(t.run(run_id))
                if len(runs) >= limit:
                    break
            return runs
        field_of, value = filters[0]
        runs = [r for r in _runs(t, t.index(field_of, value)) if _matches(r, filters[1:])]
    runs.sort(key=lambda r: _sort_key(r, field), reverse=(field in ("started", "ended")) != reverse)
    return runs[:limit]


def _runs(t: Txn, ids: Iterator[str]) -> Iterator[dict]:
    for run_id in ids:
        run = t.run(run_id)
        if run is not None:
            yield run


def _matches(run: dict, filters: list[tuple[str, str]]) -> bool:
    for key, value in filters:
        if (value not in run["tags"]) if key == "tag" else run[key] != value:
            return False
    return True


def _sort_key(run: dict, field: str) -> tuple:
    if field == "started":
        return (run["created"], run["id"])
    if field == "ended":
        return (run["ended"] or 0.0, run["id"])
    return (run[field], run["id"])


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
            for s in plan["steps"] if s["kind"] == "each"
        }
        return RunView(t.run(run_id), plan, t.steps(run_id), t.events(run_id), t.lease(run_id), children)


def run_json(v: RunView) -> dict[str, Any]:
    """Everything `weft show --json` prints."""
    subs = {sid: [{k: r[k] for k in ("id", "state", "label", "parent")} for r in runs]
            for sid, runs in v.children.items()}
    return {
        **v.run,
        "owner": None if v.lease is None else {k: v.lease[k] for k in ("pid", "host", "heartbeat")},
        "steps": [{"id": s["id"], "phase": s["phase"], **v.steps[s["id"]],
                   **({"sub_runs": subs[s["id"]]} if s["id"] in subs else {})} for s in v.plan["steps"]],
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
    rows = [("STEP", "PHASE", "STATE", "TRIES", "STARTED", "TOOK", "ERROR")]
    for spec in plan["steps"]:
        rec = steps[spec["id"]]
        error = describe_error(rec["error"]) if rec["state"] in ("failed", "skipped", "pending") else ""
        if rec["undo"] and rec["undo"].get("state") == "failed":
            error = "undo: " + describe_error(rec["undo"]["error"])
        rows.append((spec["id"], spec["phase"], rec["state"], str(rec["attempts"]), clock(rec["started"]),
                     duration(rec["started"], rec["ended"]) if rec["state"] != "running" else "", error))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + ("  " + r[6] if r[6] else "") for r in rows]
    for sid, runs in v.children.items():
        counts = ", ".join(f"{n} {state}" for state, n in sorted(Counter(r["state"] for r in runs).items()))
        lines += ["", f"sub-runs of {sid}: {counts or 'none yet'}"]
        lines += [f"  {r['parent']['index'] + 1:>4}  {r['id']}  {r['state']:<9}  {r['label'] or ''}".rstrip()
                  for r in runs if r["state"] != "succeeded"][:50]
    lines += ["", "history"]
    lines += [f"{seq:>5}  {clock(e['t'])}  {event_text(e)}" for seq, e in history]
    return "\n".join(line.rstrip() for line in lines)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def load_run_view(store: str | None, run_id_or_prefix: str) -> tuple[dict, dict[str, str]]:
    """(plan, {step id: state}) of a stored run, for drawing it coloured by state.

    `store` is a store folder, or None for the default ($WEFT_STORE, else ./.weft).
    """
    with Store(store_dir(store), create=False) as store:
        with store.read() as t:
            run_id = t.find_run(run_id_or_prefix)
            return t.plan(run_id), {sid: rec["state"] for sid, rec in t.steps(run_id).items()}
