"""Draw a compiled Plan with Graphviz.

`to_dot` writes DOT text by hand (deterministic, no Graphviz needed); `draw`
lays it out with `dot` through pygraphviz, imported only when a picture is
asked for. The diagram shows one node per step, data edges labelled with the
fields they carry, dashed control edges, bold critical-path edges, clusters
for phases, extensions, inlined sub-flows and `each` bodies, and, for a run,
fill colours per step state with a legend. A big plan is drawn with steps
grouped (per sub-flow, else per level) as `weft.render.collapse` decides.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from weft.errors import WeftError
from weft.render.collapse import Group, collapse, far_edges, far_text, group_attrs
from weft.render.style import (
    action_label,
    CLUSTERS,
    CRITICAL,
    EXTENSION_COLOURS,
    FONT,
    INK,
    LINE,
    MUTED,
    PHASE_LABELS,
    Html,
    count_text,
    expr_text,
    html,
    html_label,
    plain_label,
    queue_text,
    quote,
    seconds,
    shorten,
    signature,
    small,
    state_order,
    state_style,
)

FORMATS = (".svg", ".png", ".pdf", ".dot")
EDGE_KINDS = ("anchor", "body", "control", "data")  # weakest first: merged edges keep the strongest
MAX_EDGE_LINES = 4

_Exit = tuple[str, str | None]  # where edges leaving a step start: (node, cluster they leave, if any)


def to_dot(
    plan: dict,
    states: dict[str, str] | None = None,
    *,
    expand: bool = False,
    counts: dict[str, dict[str, int]] | None = None,
) -> str:
    """The plan as DOT text; the same arguments always give the same bytes."""
    diagram = _Diagram(plan, states, counts or {}, expand)
    diagram.add_plan(plan, "", None)
    return diagram.dot()


def draw(
    plan: dict,
    out_path: str,
    states: dict[str, str] | None = None,
    *,
    expand: bool = False,
    counts: dict[str, dict[str, int]] | None = None,
) -> None:
    """Write the diagram to `out_path`: .svg, .png, .pdf (laid out by `dot`) or .dot text."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in FORMATS:
        raise WeftError(f"cannot draw to {out_path!r}: use .svg, .png, .pdf or .dot")
    text = to_dot(plan, states, expand=expand, counts=counts)
    try:
        if ext == ".dot":
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(text)
            return
        _layout(text, ext[1:], out_path)
    except OSError as e:
        raise WeftError(f"cannot write {out_path!r}: {e.strerror}") from e


def svg(
    plan: dict,
    states: dict[str, str] | None = None,
    *,
    expand: bool = False,
    counts: dict[str, dict[str, int]] | None = None,
) -> bytes:
    """The diagram as SVG, laid out by `dot`."""
    return _layout(to_dot(plan, states, expand=expand, counts=counts), "svg")


def _layout(text: str, fmt: str, out_path: str | None = None) -> bytes | None:
    """Lay DOT text out with `dot`: written to `out_path`, or returned as bytes."""
    import pygraphviz

    with _LAYOUT, _filtered_stderr("Fontconfig warning"):  # fd 2 is the process's: one layout at a time
        return pygraphviz.AGraph(string=text).draw(out_path, format=fmt, prog="dot")


_LAYOUT = threading.Lock()


@contextmanager
def _filtered_stderr(noise: str):
    """Drop lines starting with `noise` that native code writes to stderr (the
    Graphviz bundled with pygraphviz warns about newer system font settings)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(noise):
                    sys.stderr.write(line)


def body_summary(plan: dict) -> str:
    """`3 steps: dhcp → a, ptr`: a body's run steps level by level."""
    run = [s for s in plan["steps"] if s["phase"] == "run"]
    ids = [s["id"] for s in run]
    heads = {i.split("/", 1)[0] for i in ids}
    owner = ""
    if ids and len(heads) == 1 and all("/" in i for i in ids):
        owner = f" of {heads.pop()}"
        ids = [i.split("/", 1)[1] for i in ids]
    levels: dict[int, list[str]] = {}
    for step, short in zip(run, ids):
        levels.setdefault(step["level"], []).append(short)
    chain = " → ".join(", ".join(names) for _, names in sorted(levels.items()))
    noun = "step" if len(run) == 1 else "steps"
    return f"{len(run)} {noun}{owner}: {shorten(chain, 48)}" if run else "no steps"


def annotations(step: dict, default_policy: str) -> list[str]:
    """The small print under a step: retry, timeout, undo, when, error policy, queue, its own concurrency."""
    notes = []
    if step["retry"]:
        backoff = f" backoff {seconds(step['backoff'])}" if step["backoff"] else ""
        notes.append(f"retry {step['retry']}{backoff}")
    if step["timeout"] is not None:
        notes.append(f"timeout {seconds(step['timeout'])}")
    if step["undo"] is not None:
        notes.append("undo ✓")
    if step["when"] is not None:
        notes.append(f"when {shorten(expr_text(step['when']), 32)}")
    if step["on_error"] != default_policy:
        notes.append(f"on error {step['on_error']}")
    if step.get("queue") is not None:
        notes.append(f"queue: {shorten(queue_text(step['queue']), 32)}")
    if step.get("concurrency"):
        notes.append(f"concurrency {step['concurrency']}")
    return notes


@dataclass
class _Edge:
    kind: str
    lines: set[str] = field(default_factory=set)
    critical: bool = False
    ltail: str | None = None
    pairs: dict[str, int] = field(default_factory=dict)  # edge kind -> how many step pairs it stands for
    counted: bool = False  # touches a level group: labelled with counts rather than fields


@dataclass
class _Cluster:
    parent: str | None
    attrs: dict[str, str]


class _Diagram:
    """Nodes, clusters and edges collected from a plan (and, expanded, its each bodies)."""

    def __init__(self, plan: dict, states: dict[str, str] | None, counts: dict, expand: bool) -> None:
        self.plan = plan
        self.states = states
        self.counts = counts
        self.expand = expand
        self.clusters: dict[str, _Cluster] = {}
        # cluster (None: the top) -> its sub-clusters (attrs None) and nodes, in plan order
        self.members: dict[str | None, list[tuple[str, dict[str, str] | None]]] = {}
        self.edges: dict[tuple[str, str], _Edge] = {}
        self.level_nodes: set[str] = set()  # nodes standing for steps grouped by level
        files = sorted(set(_extension_files(plan)))
        self.ext_colours = {f: EXTENSION_COLOURS[i % len(EXTENSION_COLOURS)] for i, f in enumerate(files)}
        self.ext_number = {f: i for i, f in enumerate(files)}

    # -- collecting ---------------------------------------------------------

    def add_plan(self, plan: dict, prefix: str, parent: str | None) -> tuple[list[str], _Exit | None]:
        """Add a plan's steps under `parent`; return its root nodes and the exit of its deepest run step."""
        steps = plan["steps"]
        grouped = collapse(plan, self.expand)
        far = far_edges(plan, grouped)
        entry: dict[str, str] = {}
        exits: dict[str, _Exit] = {}
        groups: dict[str, tuple[str | None, Group, list[dict]]] = {}
        for step in steps:
            sid = step["id"]
            cluster = self._step_cluster(step, prefix, parent, nest_subflows=not grouped)
            group = grouped.get(sid)
            if group is not None:
                node = prefix + group.node
                groups.setdefault(node, (cluster, group, []))[2].append(step)
                if group.kind == "level":
                    self.level_nodes.add(node)
                entry[sid] = node
                exits[sid] = (node, None)
                continue
            node = entry[sid] = prefix + sid
            exits[sid] = (node, None)
            state = self.states.get(sid) if self.states is not None and not prefix else None
            if step["kind"] == "each" and self.expand:
                each = self._cluster(cluster, f"each:{sid}", "each", _each_text(step["each"]))
                self._add_node(each, node, self._step_label(step, plan, prefix), state, step)
                roots, last = self.add_plan(step["each"]["plan"], f"{node}[*]/", each)
                for root in roots:
                    self._add_edge((node, None), root, "body")
                if last is not None:
                    exits[sid] = (last[0], each)
            else:
                label = self._step_label(step, plan, prefix, len(far.get(sid, ())), full_id=bool(grouped))
                self._add_node(cluster, node, label, state, step)
        for node, (cluster, group, members) in groups.items():
            count = sum(len(far.get(s["id"], ())) for s in members)
            self.members.setdefault(cluster, []).append((node, group_attrs(group, members, self.states, count)))
        self._add_step_edges(plan, entry, exits, far)
        return self._anchor_phases(steps, entry, exits)

    def _add_step_edges(self, plan: dict, entry: dict[str, str], exits: dict, far: dict[str, set[str]]) -> None:
        path = plan["critical_path"]
        critical = set(zip(path, path[1:]))
        for step in plan["steps"]:
            sid = step["id"]
            carried: dict[str, set[str]] = {}
            for d in step["data"]:
                text = f"{d['field']} → {d['to']}" if d["field"] is not None else f"→ {d['to']}"
                carried.setdefault(d["from"], set()).add(text)
            for src in sorted(set(carried) | set(step["after"])):
                if src in exits and src not in far.get(sid, ()):
                    kind = "data" if src in carried else "control"
                    self._add_edge(exits[src], entry[sid], kind, carried.get(src, set()), (src, sid) in critical)

    def _anchor_phases(self, steps: list[dict], entry: dict[str, str], exits: dict) -> tuple[list[str], _Exit | None]:
        """Invisible edges that rank finalize below the run steps and the hooks below both."""

        def deepest(phase: str) -> _Exit | None:
            found = [(s["level"], i, s["id"]) for i, s in enumerate(steps) if s["phase"] == phase]
            return exits[max(found)[2]] if found else None

        def roots(phase: str) -> list[str]:
            return [entry[s["id"]] for s in steps if s["phase"] == phase and not s["deps"]]

        last_run = deepest("run")
        before_hooks = deepest("finalize") or last_run
        for phase, tail in (("finalize", last_run), ("success", before_hooks), ("failure", before_hooks)):
            for root in roots(phase) if tail is not None else []:
                self._add_edge(tail, root, "anchor")
        return list(dict.fromkeys(roots("run"))), last_run

    def _step_cluster(self, step: dict, prefix: str, parent: str | None, nest_subflows: bool) -> str | None:
        cluster = parent
        phase = step["phase"]
        if phase != "run":
            cluster = self._cluster(cluster, phase, phase, PHASE_LABELS[phase])
        origin = step["origin"]
        if origin is not None:
            file = origin["extension"]
            fill, border = self.ext_colours[file]
            label = f"extension: {os.path.basename(file)}"
            key = f"ext:{self.ext_number[file]}:{os.path.basename(file)}"  # no machine paths in DOT
            cluster = self._cluster(cluster, key, "extension", label, fillcolor=fill, color=border)
        if nest_subflows:
            parts = step["id"].split("/")[:-1]
            for depth, part in enumerate(parts):
                cluster = self._cluster(cluster, "sub:" + "/".join(parts[: depth + 1]), "subflow", f"sub-flow: {part}")
        return cluster

    def _cluster(self, parent: str | None, key: str, kind: str, label: str, **attrs: str) -> str:
        name = f"{parent or 'cluster'}/{key}"
        if name not in self.clusters:
            style = dict(CLUSTERS[kind])
            style.update(attrs, label=Html(plain_label([label])))
            self.clusters[name] = _Cluster(parent, style)
            self.members.setdefault(parent, []).append((name, None))
        return name

    def _step_label(self, step: dict, plan: dict, prefix: str, far: int = 0, full_id: bool = False) -> Html:
        """Bold name (the whole id when no sub-flow cluster says where it belongs), action, small print."""
        sid = step["id"]
        parts = [f"<B>{html(sid if full_id else sid.rsplit('/', 1)[-1])}</B>"]
        if step["kind"] == "action":
            action = step["action"]
            parts.append(html(action_label(action)))
        elif step["kind"] == "wait":
            parts.append(html(f"wait for signal {step['wait']['signal']}"))
        elif self.expand:
            parts.append(html("one sub-run per item"))
        else:
            parts.append(html(_each_text(step["each"])))
            parts.append(small(body_summary(step["each"]["plan"]), 9, INK))
        notes = annotations(step, plan["on_error"])
        if notes:
            parts.append(small(" · ".join(notes)))
        if far:
            parts.append(small(far_text(far)))
        counted = self.counts.get(sid) if not prefix else None
        if counted and count_text(counted):
            parts.append(small(count_text(counted), 10, INK))
        return html_label(parts)

    def _add_node(self, cluster: str | None, node: str, label: Html, state: str | None, step: dict) -> None:
        attrs: dict[str, str] = {"label": label}
        if step["kind"] == "wait":
            attrs["style"] = "rounded,filled,dashed"
        elif step["kind"] == "each" and not self.expand:
            attrs["peripheries"] = "2"
        if step["origin"] is not None and state is None:
            attrs["color"] = self.ext_colours[step["origin"]["extension"]][1]
        if state is not None:
            attrs["fillcolor"], attrs["color"], _ = state_style(state)
        self.members.setdefault(cluster, []).append((node, attrs))

    def _add_edge(
        self,
        tail: _Exit,
        head: str,
        kind: str,
        lines: set[str] | None = None,
        critical: bool = False,
    ) -> None:
        node, ltail = tail
        if node == head:
            return
        edge = self.edges.setdefault((node, head), _Edge(kind, ltail=ltail))
        if EDGE_KINDS.index(kind) > EDGE_KINDS.index(edge.kind):
            edge.kind = kind
        edge.lines |= lines or set()
        edge.critical = edge.critical or critical
        edge.pairs[kind] = edge.pairs.get(kind, 0) + 1
        edge.counted = edge.counted or node in self.level_nodes or head in self.level_nodes

    # -- writing ------------------------------------------------------------

    def dot(self) -> str:
        plan = self.plan
        title = [f'<FONT POINT-SIZE="16"><B>{html(plan["flow"])}</B></FONT>']
        if plan["params"] or plan["results"]:
            title += [small(line, 10) for line in signature(plan)]
        out = [f"digraph {quote(plan['flow'])} {{"]
        out.append(
            "  graph "
            + _attrs(
                {
                    "rankdir": "TB",
                    "compound": "true",
                    "newrank": "true",
                    "fontname": FONT,
                    "fontsize": "11",
                    "fontcolor": INK,
                    "label": html_label(title, "LEFT"),
                    "labelloc": "t",
                    "labeljust": "l",
                    "nodesep": "0.35",
                    "ranksep": "0.5",
                    "pad": "0.3",
                    "bgcolor": "white",
                }
            )
        )
        out.append(
            "  node "
            + _attrs(
                {
                    "shape": "box",
                    "style": "rounded,filled",
                    "fillcolor": "white",
                    "color": MUTED,
                    "fontname": FONT,
                    "fontsize": "11",
                    "fontcolor": INK,
                    "margin": "0.14,0.06",
                    "penwidth": "1.2",
                }
            )
        )
        out.append(
            "  edge "
            + _attrs(
                {
                    "color": MUTED,
                    "fontname": FONT,
                    "fontsize": "9",
                    "fontcolor": MUTED,
                    "arrowsize": "0.7",
                }
            )
        )
        self._write_cluster(None, out, "  ")
        if self.states:
            self._write_legend(out)
        for (tail, head), edge in self.edges.items():
            out.append(f"  {quote(tail)} -> {quote(head)} {_attrs(_edge_attrs(edge))}".rstrip())
        out.append("}")
        return "\n".join(out) + "\n"

    def _write_cluster(self, name: str | None, out: list[str], indent: str) -> None:
        for member, attrs in self.members.get(name, []):
            if attrs is not None:
                out.append(f"{indent}{quote(member)} {_attrs(attrs)}")
                continue
            cluster_attrs = {"fontsize": "10", "fontcolor": MUTED, **self.clusters[member].attrs}
            out.append(f"{indent}subgraph {quote(member)} {{")
            out.append(f"{indent}  graph {_attrs(cluster_attrs)}")
            self._write_cluster(member, out, indent + "  ")
            out.append(f"{indent}}}")

    def _write_legend(self, out: list[str]) -> None:
        present = state_order(set(self.states.values()))
        cells = "".join(
            f'<TD BGCOLOR="{state_style(s)[0]}" COLOR="{state_style(s)[1]}">{html(s)}</TD>' for s in present
        )
        table = f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="4" CELLPADDING="4"><TR>{cells}</TR></TABLE>>'
        out.append('  subgraph "cluster_legend" {')
        out.append(
            "    graph " + _attrs({"fontsize": "10", "fontcolor": MUTED, "label": "states", **CLUSTERS["legend"]})
        )
        out.append(
            "    " + quote("weft:legend") + " " + _attrs({"shape": "plain", "style": "solid", "label": Html(table)})
        )
        out.append("  }")


def _each_text(each: dict) -> str:
    bound = f" ×{each['concurrency']}" if each["concurrency"] else ""
    return f"each {each['var']} in {shorten(expr_text(each['items']), 28)}{bound}"


def _edge_attrs(edge: _Edge) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if edge.kind == "anchor":
        return {"style": "invis"}
    data, control = edge.pairs.get("data", 0), edge.pairs.get("control", 0)
    if edge.counted and data + control > 1:
        counts = [f"{data} edge{'s' * (data != 1)}"] if data else []
        counts += [f"{control} after"] if control else []
        attrs["label"] = Html(plain_label(counts))
    if edge.kind == "data" and edge.lines and "label" not in attrs:
        lines = sorted(edge.lines)
        if len(lines) > MAX_EDGE_LINES:
            lines = lines[: MAX_EDGE_LINES - 1] + [f"+{len(lines) - MAX_EDGE_LINES + 1} more"]
        attrs["label"] = Html(plain_label(lines))
    elif edge.kind == "control":
        attrs.update(style="dashed", color=LINE)
    elif edge.kind == "body":
        attrs.update(style="dotted", color=CLUSTERS["each"]["color"])
    if edge.critical:
        attrs.update(penwidth="2.4", color=CRITICAL)
    if edge.ltail is not None:
        attrs["ltail"] = edge.ltail
    return attrs


def _attrs(attrs: dict[str, str]) -> str:
    if not attrs:
        return ""
    return "[" + ", ".join(f"{k}={v if isinstance(v, Html) else quote(v)}" for k, v in sorted(attrs.items())) + "]"


def _extension_files(plan: dict) -> Iterator[str]:
    for step in plan["steps"]:
        if step["origin"] is not None:
            yield step["origin"]["extension"]
        if step["kind"] == "each":
            yield from _extension_files(step["each"]["plan"])
