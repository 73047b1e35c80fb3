"""Palette, DOT quoting and label text for `weft.render.graph`.

Pure string work with no Graphviz import: colours per step state, cluster
styles, Plan expressions written back in flow syntax, and the escaping that
plain (`"..."`) and HTML-like (`<...>`) DOT labels need.
"""

from __future__ import annotations

import json
from typing import Any

from weft.plan import types as typesys

FONT = "Helvetica,Arial,sans-serif"
INK = "#1E293B"
MUTED = "#64748B"
LINE = "#94A3B8"
CRITICAL = "#0F172A"

# step state -> (fill, border, count symbol), in the order legends and counts list them
STATES: dict[str, tuple[str, str, str]] = {
    "succeeded": ("#BBF7D0", "#16A34A", "✓"),
    "failed": ("#FECACA", "#DC2626", "✗"),
    "running": ("#BFDBFE", "#2563EB", "▶"),
    "suspended": ("#FDE68A", "#D97706", "◷"),
    "pending": ("#FFFFFF", "#94A3B8", "…"),
    "skipped": ("#E5E7EB", "#9CA3AF", "↷"),
    "cancelled": ("#9CA3AF", "#4B5563", "⊘"),
    "undone": ("#E9D5FF", "#9333EA", "↺"),
}
UNKNOWN_STATE = ("#F5F5F4", "#78716C", "?")

# cluster kind -> attributes
CLUSTERS: dict[str, dict[str, str]] = {
    "finalize": {"style": "rounded,dashed,filled", "fillcolor": "#F1F5F9", "color": "#64748B"},
    "success": {"style": "rounded,dashed,filled", "fillcolor": "#F0FDF4", "color": "#16A34A"},
    "failure": {"style": "rounded,dashed,filled", "fillcolor": "#FEF2F2", "color": "#DC2626"},
    "extension": {"style": "rounded,filled"},  # colours per file: EXTENSION_COLOURS
    "subflow": {"style": "rounded,filled", "fillcolor": "#F8FAFC", "color": "#CBD5E1"},
    "each": {"style": "rounded,filled", "fillcolor": "#EEF2FF", "color": "#6366F1", "penwidth": "1.5"},
    "legend": {"style": "rounded", "color": "#CBD5E1"},
}
PHASE_LABELS = {"finalize": "finalize", "success": "on success", "failure": "on failure"}

# (fill, border) per extension file, assigned in sorted file order
EXTENSION_COLOURS = [
    ("#FAF5FF", "#A855F7"),
    ("#ECFEFF", "#0891B2"),
    ("#FFF7ED", "#EA580C"),
    ("#FDF2F8", "#DB2777"),
    ("#F7FEE7", "#65A30D"),
]


def state_style(state: str) -> tuple[str, str, str]:
    return STATES.get(state, UNKNOWN_STATE)


def state_order(states: set[str]) -> list[str]:
    """Known states in palette order, then unknown ones sorted."""
    return [s for s in STATES if s in states] + sorted(states - STATES.keys())


def count_text(counts: dict[str, int]) -> str:
    """`✓ 97 ✗ 1 … 2` for the non-zero counts."""
    return " ".join(f"{state_style(s)[2]} {counts[s]}" for s in state_order(set(counts)) if counts[s])


# -- DOT quoting ---------------------------------------------------------------


def quote(text: str) -> str:
    """A DOT id as a quoted string (ids are taken literally apart from `\"`)."""
    return '"' + text.replace('"', '\\"') + '"'


def plain_label(lines: list[str]) -> str:
    """A quoted DOT label of several lines; backslashes stay literal."""
    body = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return f'"{body}"'


def html(text: str) -> str:
    """Text made safe inside an HTML-like label (Graphviz reads `\\\\` there as one backslash)."""
    return (
        text.replace("\\", "\\\\")
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", " ")
    )


def small(text: str, size: int = 9, colour: str = MUTED) -> str:
    return f'<FONT POINT-SIZE="{size}" COLOR="{colour}">{html(text)}</FONT>'


class Html(str):
    """A DOT value already in DOT syntax (quoted or `<...>`), written as is."""


def html_label(parts: list[str], align: str = "CENTER") -> Html:
    """An HTML-like label, one table row per already-escaped line (rows space evenly)."""
    rows = "".join(f'<TR><TD ALIGN="{align}">{part}</TD></TR>' for part in parts)
    return Html(f'<<TABLE BORDER="0" CELLBORDER="0" CELLPADDING="0" CELLSPACING="1">{rows}</TABLE>>')


# -- text for plan values --------------------------------------------------------


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def seconds(value: float) -> str:
    """30 -> `30s`, 120 -> `2m`, 7200 -> `2h`, 0.5 -> `0.5s`."""
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


def type_text(t: list) -> str:
    return str(typesys.from_data(t))


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return json.dumps(v, ensure_ascii=False, default=str)


def expr_text(e: list) -> str:
    """A Plan expression written the way a flow spells it."""
    tag = e[0]
    if tag == "lit":
        return _literal(e[1])
    if tag == "param":
        return e[1]
    if tag == "step":
        return e[1] if e[2] is None else field_text(e[1], e[2])
    if tag == "fmt":
        inner = "".join(p if isinstance(p, str) else "${" + expr_text(p) + "}" for p in e[1])
        return json.dumps(inner, ensure_ascii=False)
    if tag == "list":
        return "[" + ", ".join(expr_text(x) for x in e[1]) + "]"
    if tag == "rec":
        return "(" + ", ".join(f"{typesys.key_text(k)}: {expr_text(x)}" for k, x in e[1]) + ")"
    if tag == "get":
        return field_text(_operand(e[1]), e[2])
    if tag == "idx":
        return f"{_operand(e[1])}[{expr_text(e[2])}]"
    if tag == "op":
        return f"{_operand(e[2])} {e[1]} {_operand(e[3])}"
    if tag in ("and", "or"):
        return f"{_operand(e[1])} {tag} {_operand(e[2])}"
    if tag == "not":
        return f"not {_operand(e[1])}"
    if tag == "neg":
        return f"-{_operand(e[1])}"
    if tag == "dflt":
        return f"{_operand(e[1])} ?? {_operand(e[2])}"
    if tag == "opt":
        return f"{_operand(e[1])}?"
    return tag


def field_text(owner: str, key: str) -> str:
    """`owner.key`, or `owner["Content-Type"]` for a key that is not a name."""
    text = typesys.key_text(key)
    return f"{owner}.{key}" if text == key else f"{owner}[{text}]"


def queue_text(e: list) -> str:
    """A step's queue expression as the text it makes: `proxy`, `proxy-${subnet}`, `${dc.name}`."""
    if e[0] == "lit" and isinstance(e[1], str):
        return e[1]
    return json.loads(expr_text(e if e[0] == "fmt" else ["fmt", [e]]))


def result_text(r: dict) -> str:
    """A declared result of a Plan: `ip: str`, `"Content-Type": str`."""
    return f"{typesys.key_text(r['name'])}: {type_text(r['type'])}"


def returns_text(returns: dict) -> str:
    """What a Plan's `return` gives: `ip: dhcp.ip, "X-Id": id`."""
    return ", ".join(f"{typesys.key_text(k)}: {expr_text(v)}" for k, v in returns.items())


def _operand(e: list) -> str:
    text = expr_text(e)
    return f"({text})" if e[0] in ("op", "and", "or", "not", "neg", "dflt") else text


def param_text(p: dict, limit: int | None = None) -> str:
    """A Plan parameter as a flow declares it: `domain: str = "example.com"`, `password: secret str`
    (a secret's default is never shown: a Plan from elsewhere may have one, the compiler refuses it)."""
    text = f"{p['name']}: {'secret ' if p.get('secret') else ''}{type_text(p['type'])}"
    if p["default"] is not None and not p.get("secret"):
        default = expr_text(p["default"])
        text += f" = {shorten(default, limit) if limit else default}"
    return text


def signature(plan: dict, width: int = 90) -> list[str]:
    """`(name: str, domain: str = "example.com") → (ip: str)` wrapped into lines for a title."""
    words = [param_text(p, 24) for p in plan["params"]]
    words = [w + "," for w in words[:-1]] + words[-1:]
    words = ["(" + (words[0] if words else "")] + words[1:]
    words[-1] += ")"
    if plan["results"]:
        words.append("→ (" + ", ".join(result_text(r) for r in plan["results"]) + ")")
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) > width:
            lines.append(word)
        else:
            lines[-1] += " " + word
    return lines


STD_PACKAGE = "weft.stdlib_actions"


def action_label(action: dict) -> str:
    """How a step's action reads: `proxy.dhcp_reserve`, `std.file.append`."""
    module = action["module"]
    if module == STD_PACKAGE or module.startswith(STD_PACKAGE + "."):
        return "std" + module[len(STD_PACKAGE) :] + "." + action["name"]
    return f"{module.rsplit('.', 1)[-1]}.{action['name']}"
