"""Which steps of a big plan `weft.render.graph` draws as one node, and how such a node reads.

Above `BIG_PLAN` steps (unless the diagram is expanded) the steps of each
inlined sub-flow (`call/step` ids) become one node per sub-flow and phase. If
more than `BIG_PLAN` nodes would still remain, steps are grouped instead by
phase, extension and level: one node per level, or per band of levels when
there are too many levels (more than `MAX_BANDS` in a column, or more than
`BIG_PLAN` nodes in all). A short critical path keeps its steps as single
nodes, a bold chain through the levels; a band holding a single step draws
that step. Edges between grouped steps merge into one per pair of nodes,
labelled with how many they stand for, and edges that skip a whole level are
counted in the label of the node they lead to rather than drawn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

from weft.render.style import (
    INK,
    action_label,
    count_text,
    html,
    html_label,
    shorten,
    small,
    state_style,
)

BIG_PLAN = 300  # at most this many nodes (unexpanded) before steps are drawn in groups
KEEP_CRITICAL = 60  # a critical path up to this long stays step by step when levels collapse
MAX_BANDS = 60  # groups in one column (phase, extension): more and each group holds several levels
LISTED_IDS = 3

_Area = tuple[str, str | None]  # (phase, extension file): groups never straddle a cluster


@dataclass(frozen=True)
class Group:
    """A node standing for several steps."""

    node: str  # the node's id: `g001/*`, `level 4`, `finalize:levels 2–3`
    title: str  # `g001` for a sub-flow, `level 4` or `levels 4–7` for levels
    kind: str  # "subflow" or "level"
    levels: tuple[int, int] | None = None  # the lowest and highest level of a level group's steps


def collapse(plan: dict, expand: bool) -> dict[str, Group]:
    """Step id -> the group it is drawn in; steps not named are drawn one by one."""
    steps = plan["steps"]
    if expand or len(steps) <= BIG_PLAN:
        return {}
    by_subflow = {}
    for step in steps:
        if "/" in step["id"]:
            head = step["id"].split("/", 1)[0]
            by_subflow[step["id"]] = Group(f"{_phase_tag(step['phase'])}{head}/*", head, "subflow")
    nodes = len({g.node for g in by_subflow.values()}) + len(steps) - len(by_subflow)
    return by_subflow if nodes <= BIG_PLAN else by_level(plan)


def by_level(plan: dict, budget: int = BIG_PLAN) -> dict[str, Group]:
    """Group steps by (phase, extension, band of levels), the narrowest bands that fit the budget."""
    steps = plan["steps"]
    path = plan["critical_path"]
    keep = set(path) if len(path) <= KEEP_CRITICAL else set()
    rest = [s for s in steps if s["id"] not in keep]
    levels = {(_area(s), s["level"]) for s in rest}
    deepest = max((level for _, level in levels), default=0)
    per_area = Counter(area for area, _ in levels)
    width = -(-max(per_area.values(), default=1) // MAX_BANDS)  # no narrower band can fit
    while width <= deepest:
        bands = {(area, level // width) for area, level in levels}
        tall = max(Counter(area for area, _ in bands).values())
        if len(keep) + len(bands) <= budget and tall <= MAX_BANDS:
            break
        width += 1
    return _name_bands(steps, {s["id"]: (_area(s), s["level"] // width) for s in rest})


def _name_bands(steps: list[dict], bands: dict[str, tuple[_Area, int]]) -> dict[str, Group]:
    members: dict[tuple[_Area, int], list[dict]] = {}
    for step in steps:
        if step["id"] in bands:
            members.setdefault(bands[step["id"]], []).append(step)
    grouped = {}
    for ((phase, file), _), found in members.items():
        if len(found) == 1:
            continue  # a band of one step draws the step
        low, high = min(s["level"] for s in found), max(s["level"] for s in found)
        title = f"level {low}" if low == high else f"levels {low}–{high}"
        extension = f"{file}:" if file is not None else ""
        group = Group(f"{_phase_tag(phase)}{extension}{title}", title, "level", (low, high))
        for step in found:
            grouped[step["id"]] = group
    return grouped


def far_edges(plan: dict, grouped: dict[str, Group]) -> dict[str, set[str]]:
    """Step pairs left undrawn once steps are grouped by level, counted per step they lead to.

    An edge whose ends lie more than one level apart (a whole level between
    their nodes) is not drawn, unless it is on the critical path: every step
    still has a drawn edge from the level just above it, and its node's label
    counts the rest. Returns {step id: {its deps whose edges are left out}}.
    """
    if not any(g.kind == "level" for g in grouped.values()):
        return {}
    span = {}
    for step in plan["steps"]:
        group = grouped.get(step["id"])
        span[step["id"]] = group.levels if group is not None else (step["level"], step["level"])
    path = plan["critical_path"]
    critical = set(pairwise(path))
    far: dict[str, set[str]] = {}
    for step in plan["steps"]:
        sid = step["id"]
        for src in {d["from"] for d in step["data"]} | set(step["after"]):
            if span[sid][0] - span[src][1] > 1 and (src, sid) not in critical:
                far.setdefault(sid, set()).add(src)
    return far


def far_text(count: int) -> str:
    return f"+{count} edge{'s' * (count != 1)} from earlier levels"


def _area(step: dict) -> _Area:
    origin = step["origin"]
    return step["phase"], origin["extension"] if origin is not None else None


def _phase_tag(phase: str) -> str:
    return "" if phase == "run" else f"{phase}:"


def group_attrs(group: Group, members: list[dict], states: dict[str, str] | None, far: int = 0) -> dict[str, str]:
    """A group node's label and style: what it holds and, for a run, its steps' states."""
    noun = "step" if len(members) == 1 else "steps"
    if group.kind == "subflow":
        parts = [f"<B>{html(group.title)}</B>", small(f"sub-flow · {len(members)} {noun}")]
    else:
        ids = ", ".join(shorten(s["id"], 24) for s in members[:LISTED_IDS])
        more = f", … +{len(members) - LISTED_IDS}" if len(members) > LISTED_IDS else ""
        parts = [f"<B>{html(f'{group.title} · {len(members)} {noun}')}</B>", small(ids + more, 9, INK)]
        parts.append(small(_actions_text(members)))
        heads = {s["id"].split("/", 1)[0] for s in members if "/" in s["id"]}
        if heads:
            parts.append(small(f"in {len(heads)} sub-flow{'s' * (len(heads) != 1)}"))
        if far:
            parts.append(small(far_text(far)))
    attrs: dict[str, str] = {"peripheries": "2"}
    if states is not None:
        found = [states.get(s["id"], "pending") for s in members]
        tally = {state: found.count(state) for state in set(found)}
        parts.append(small(count_text(tally), 10, INK))
        attrs["fillcolor"], attrs["color"], _ = state_style(overall_state(found))
    attrs["label"] = html_label(parts)
    return attrs


def _actions_text(members: list[dict]) -> str:
    """`std.echo ×300 · dns_create ×12 · 2 more`: the actions a group calls, most used first."""
    used = Counter(action_label(s["action"]) if s["kind"] == "action" else s["kind"] for s in members)
    ranked = sorted(used.items(), key=lambda item: (-item[1], item[0]))
    words = [f"{shorten(name, 28)} ×{n}" for name, n in ranked[:2]]
    if len(ranked) > 2:
        words.append(f"{len(ranked) - 2} more")
    return " · ".join(words)


def overall_state(found: list[str]) -> str:
    """One state standing for a collapsed group of steps."""
    present = set(found)
    for state in ("failed", "running", "suspended", "cancelled", "undone"):
        if state in present:
            return state
    if present <= {"pending"}:
        return "pending"
    if present <= {"succeeded", "skipped"}:
        return "succeeded" if "succeeded" in present else "skipped"
    return "running"
