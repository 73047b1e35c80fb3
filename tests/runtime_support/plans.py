"""Build Plans by hand (docs/plan-format.md), as the compiler would emit them."""

from __future__ import annotations

import os
from typing import Any

from weft.plan import expr

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "rt_actions"


def lit(v: Any) -> list:
    return ["lit", v]


def ref(step: str, field: str | None = None) -> list:
    return ["step", step, field]


def param(name: str) -> list:
    return ["param", name]


def step(
    sid: str,
    action: str = "noop",
    *,
    module: str = MODULE,
    inputs: dict | None = None,
    after: tuple = (),
    phase: str = "run",
    idempotent: bool | None = None,
    retry: int = 0,
    backoff: float = 0.0,
    timeout: float | None = None,
    on_error: str | None = None,
    when: list | None = None,
    weight: float = 1.0,
    undo: tuple | None = None,
    wait: dict | None = None,
    outputs: list | None = None,
    **fields: Any,
) -> dict:
    """A step calling `module.action`; `inputs` values are expressions (plain values become literals);
    `undo` is (action, inputs); `fields` set any other Plan field as given (docs/plan-format.md)."""
    inputs = {k: v if _is_expr(v) else lit(v) for k, v in (inputs or {}).items()}
    if idempotent is None:
        idempotent = action in ("noop", "echo", "add", "effect_again", "sleep", "hang", "say")
    return {
        "id": sid,
        "name": sid,
        "phase": phase,
        "kind": "wait" if wait else "action",
        "action": None if wait else {"module": module, "name": action, "idempotent": idempotent},
        "inputs": inputs,
        "outputs": outputs or ["rec", []],
        "after": list(after),
        "retry": retry,
        "backoff": backoff,
        "timeout": timeout,
        "on_error": on_error,
        "when": when,
        "weight": weight,
        "undo": None
        if undo is None
        else {
            "action": {"module": MODULE, "name": undo[0], "idempotent": False},
            "inputs": {k: v if _is_expr(v) else lit(v) for k, v in undo[1].items()},
        },
        "each": None,
        "wait": wait,
        "origin": None,
        "span": {"file": "test.flow", "line": 1, "col": 1},
        **fields,
    }


def _is_expr(v: Any) -> bool:
    return (
        isinstance(v, list)
        and bool(v)
        and isinstance(v[0], str)
        and v[0] in ("lit", "param", "step", "fmt", "list", "rec", "get", "idx", "op", "and", "or", "not", "neg")
    )


def plan(
    flow: str,
    steps: list[dict],
    *,
    params: list | None = None,
    returns: dict | None = None,
    label: list | None = None,
    tags: list | None = None,
    locks: list | None = None,
    **fields: Any,
) -> dict:
    """A Plan: fills deps, data edges, level, remaining and the critical path; `fields` override the rest."""
    by_id = {s["id"]: s for s in steps}
    for s in steps:
        refs = set()
        for e in list(s["inputs"].values()) + ([s["when"]] if s["when"] else []):
            refs |= expr.step_refs(e)
        refs = {r for r in refs if r in by_id and by_id[r]["phase"] == s["phase"]}
        s["deps"] = sorted(refs | set(s["after"]))
        s["data"] = [
            {"from": r, "field": e[2] if e[0] == "step" else None, "to": k}
            for k, e in s["inputs"].items()
            for r in sorted(expr.step_refs(e))
        ]
    for s in steps:
        s["level"] = max((by_id[d]["level"] + 1 for d in s["deps"]), default=0)
    dependents: dict[str, list[str]] = {s["id"]: [] for s in steps}
    for s in steps:
        for d in s["deps"]:
            dependents[d].append(s["id"])
    for s in reversed(steps):
        s["remaining"] = s["weight"] + max((by_id[d]["remaining"] for d in dependents[s["id"]]), default=0.0)
    roots = [s for s in steps if s["phase"] == "run" and not s["deps"]]
    path, current = [], max(roots, key=lambda s: s["remaining"], default=None)
    while current is not None:
        path.append(current["id"])
        nxt = [by_id[d] for d in dependents[current["id"]]]
        current = max(nxt, key=lambda s: s["remaining"], default=None)
    for s in steps:
        s["critical"] = s["id"] in path
    return {
        "format": "weft.plan",
        "version": 1,
        "flow": flow,
        "file": os.path.join(HERE, f"{flow}.flow"),
        "search_path": [HERE],
        "params": params or [],
        "results": [],
        "returns": returns or {},
        "label": label,
        "tags": tags or [],
        "locks": locks or [],
        "on_error": "pause",
        "steps": steps,
        "critical_path": path,
        "extensions": [],
        **fields,
    }


def chain(n: int, action: str = "noop") -> dict:
    steps = [step(f"s{i}", action, after=(f"s{i - 1}",) if i else ()) for i in range(n)]
    return plan("chain", steps)


def fan(n: int, action: str = "noop", inputs: dict | None = None) -> dict:
    """One root, `n` independent steps after it, one sink after them all."""
    middle = [step(f"s{i}", action, inputs=inputs, after=("root",)) for i in range(n)]
    steps = [step("root")] + middle + [step("sink", after=tuple(s["id"] for s in middle))]
    return plan("fan", steps)
