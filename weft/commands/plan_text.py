"""`weft plan` output: a flow's steps in execution order, like a plan before apply."""

from __future__ import annotations

import os

from weft import typesys as T
from weft.expr import show

PHASE_TITLES = {"finalize": "finalize (in order, after every run step)", "success": "on success", "failure": "on failure"}


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
        out.append("returns " + ", ".join(f"{k}: {expr_text(v)}" for k, v in plan["returns"].items()))
    return "\n".join(out)


def _step_line(s: dict, width: int) -> str:
    mark = "*" if s["critical"] else "+"
    line = f"  {mark} {s['id']:<{width}}  {_what(s)}"
    notes = []
    if s["data"]:
        notes.append("needs " + ", ".join(sorted({f"{d['from']}.{d['field']}" if d["field"] else d["from"] for d in s["data"]})))
    if s["after"]:
        notes.append("after " + ", ".join(s["after"]))
    if s["retry"]:
        notes.append(f"retry {s['retry']}" + (f" backoff {_secs(s['backoff'])}" if s["backoff"] else ""))
    if s["timeout"]:
        notes.append(f"timeout {_secs(s['timeout'])}")
    if s["when"] is not None:
        notes.append(f"when {expr_text(s['when'])}")
    if s["on_error"] != "pause":
        notes.append(f"on error {s['on_error']}")
    if s["undo"]:
        notes.append(f"undo {_action(s['undo']['action'])}")
    if s["origin"]:
        notes.append(f"from extension {_rel(s['origin']['extension'])}")
    return line + ("   [" + "; ".join(notes) + "]" if notes else "")


def _what(s: dict) -> str:
    if s["kind"] == "wait":
        return f"wait for signal '{s['wait']['signal']}'"
    if s["kind"] == "each":
        e = s["each"]
        body = e["plan"]["steps"]
        return f"each {e['var']} in {expr_text(e['items'])} (concurrency {e['concurrency']}): {len(body)} steps per item"
    return _action(s["action"]) if s["action"] else "?"


def _action(a: dict) -> str:
    module = "std" if a["module"].startswith("weft.stdlib_actions") else a["module"].rsplit(".", 1)[-1]
    return f"{module}.{a['name']}"


def _params(plan: dict) -> str:
    parts = []
    for p in plan["params"]:
        text = f"{p['name']}: {T.from_data(p['type'])}"
        if p["default"] is not None:
            text += f" = {expr_text(p['default'])}"
        parts.append(text)
    return ", ".join(parts)


def _results(plan: dict) -> str:
    return ", ".join(f"{r['name']}: {T.from_data(r['type'])}" for r in plan["results"])


def _secs(v: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if v >= size and v % size == 0:
            return f"{int(v // size)}{unit}"
    return f"{v:g}s"


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def expr_text(e: list) -> str:
    """A Plan expression written back in .flow syntax."""
    tag = e[0]
    if tag == "lit":
        v = e[1]
        return f'"{v}"' if isinstance(v, str) else show(v)
    if tag == "param":
        return e[1]
    if tag == "step":
        return e[1] if e[2] is None else f"{e[1]}.{e[2]}"
    if tag == "fmt":
        return '"' + "".join(p if isinstance(p, str) else "${" + expr_text(p) + "}" for p in e[1]) + '"'
    if tag == "list":
        return "[" + ", ".join(expr_text(x) for x in e[1]) + "]"
    if tag == "rec":
        return "(" + ", ".join(f"{k}: {expr_text(x)}" for k, x in e[1]) + ")"
    if tag == "get":
        return f"{expr_text(e[1])}.{e[2]}"
    if tag == "idx":
        return f"{expr_text(e[1])}[{expr_text(e[2])}]"
    if tag == "op":
        return f"{expr_text(e[2])} {e[1]} {expr_text(e[3])}"
    if tag in ("and", "or"):
        return f"({expr_text(e[1])} {tag} {expr_text(e[2])})"
    if tag == "not":
        return f"not {expr_text(e[1])}"
    return f"-{expr_text(e[1])}"
