"""Drawing Plans and runs with Graphviz: `to_dot` (no Graphviz needed) and `draw` (SVG, PNG, PDF)."""

from weft.render.graph import draw, to_dot

__all__ = ["draw", "to_dot"]
