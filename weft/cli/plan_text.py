"""`weft plan` output: a flow's steps in execution order, like a plan before apply."""

from __future__ import annotations

import os

from weft.render.style import (
    action_label,
    expr_text,
    field_text,
    param_text,
    queue_text,
    result_text,
    returns_text,
    seconds,
)

PHASE_TITLES = {
    "finalize": "finalize (in order, after every run step)",
    "success": "on success",
    "failure": "on failure",
}


def format_plan(plan: dict, extensions: list[dict]) -> str:
    steps = plan["steps"]
    run = [s for s in steps if s["phase"] == "run"]
    levels = max((s["level"] for s in run), default=-1) + 1
    critical = " -> ".join(plan["critical_path"]) or "-"
    out = [
        f"flow {plan['flow']}({_params(plan)})" + (f" -> ({_results(plan)})" if plan["results"] else ""),
        f"  from {_rel(plan['file'])}",
        f"  {len(steps)} steps, {levels} parallel level{'s' * (levels != 1)}, critical path: {critical}",
    ]
    if plan["label"] is not None:
        out.append(f"  label: {expr_text(plan['label'])}")
    if plan["tags"]:
        out.append(f"  tags: {', '.join(plan['tags'])}")
    for lock in plan["locks"]:
        out.append(f"  lock: {expr_text(lock)}")
    for ext in extensions:
        out.append(f"  extension: {_rel(ext['file'])}:{ext['line']}")
    width = max((len(s["id"]) for s in steps), default=4)
    for level in range(levels):
        out.append("")
        out.append(f"level {level}" + ("  (start)" if level == 0 else ""))
        for s in (s for s in run if s["level"] == level):
            out.append(_step_line(s, width))
    for phase, title in PHASE_TITLES.items():
        group = [s for s in steps if s["phase"] == phase]
        if group:
            out.append("")
            out.append(title)
            out += [_step_line(s, width) for s in group]
    if plan["returns"]:
        out.append("")
        out.append("returns " + returns_text(plan["returns"]))
    return "\n".join(out)


def _step_line(s: dict, width: int) -> str:
    mark = "*" if s["critical"] else "+"
    line = f"  {mark} {s['id']:<{width}}  {_what(s)}"
    notes = []
    if s["data"]:
        notes.append(
            "needs "
            + ", ".join(sorted({field_text(d["from"], d["field"]) if d["field"] else d["from"] for d in s["data"]}))
        )
    if s["after"]:
        notes.append("after " + ", ".join(s["after"]))
    if s["retry"]:
        notes.append(f"retry {s['retry']}" + (f" backoff {seconds(s['backoff'])}" if s["backoff"] else ""))
    if s["timeout"]:
        notes.append(f"timeout {seconds(s['timeout'])}")
    if s["when"] is not None:
        notes.append(f"when {expr_text(s['when'])}")
    if s.get("queue") is not None:
        notes.append(f"queue {queue_text(s['queue'])}")
    if s.get("concurrency"):
        notes.append(f"concurrency {s['concurrency']}")
    if s["on_error"] != "pause":
        notes.append(f"on error {s['on_error']}")
    if s["undo"]:
        notes.append(f"undo {action_label(s['undo']['action'])}")
    if s["origin"]:
        notes.append(f"from extension {_rel(s['origin']['extension'])}")
    return line + ("   [" + "; ".join(notes) + "]" if notes else "")


def _what(s: dict) -> str:
    if s["kind"] == "wait":
        return f"wait for signal '{s['wait']['signal']}'"
    if s["kind"] == "each":
        e = s["each"]
        body = e["plan"]
        returns = f", each returns ({returns_text(body['returns'])})" if body["returns"] else ""
        return (
            f"each {e['var']} in {expr_text(e['items'])} (concurrency {e['concurrency']}): "
            f"{len(body['steps'])} steps per item{returns}"
        )
    return action_label(s["action"]) if s["action"] else "?"


def _params(plan: dict) -> str:
    return ", ".join(param_text(p) for p in plan["params"])


def _results(plan: dict) -> str:
    return ", ".join(result_text(r) for r in plan["results"])


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
